"""HTMX helpers: the same URL serves the full page or, for an HTMX request, only its partial."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers


def htmx_partial(request, full_template: str, partial_template: str, context: dict, *,
                 status: int = 200) -> HttpResponse:
    """Render the partial for HTMX requests (unless they target the whole body), else the full page."""
    is_partial = request.htmx and not request.htmx.boosted
    return render(request, partial_template if is_partial else full_template, context, status=status)


class VaryOnHtmxMiddleware:
    """Full pages and partials share URLs, so caches must key on HX-Request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        patch_vary_headers(response, ("HX-Request",))
        return response
