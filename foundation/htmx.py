"""HTMX helpers: the same URL serves the full page or, for an HTMX request, only its partial."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers


def htmx_partial(request, full_template: str, partial_template: str, context: dict, *,
                 status: int = 200) -> HttpResponse:
    """Render the partial for HTMX requests (unless they target the whole body), else the full page."""
    return render(request, partial_template if is_partial(request) else full_template, context, status=status)


def is_partial(request) -> bool:
    """Whether `htmx_partial` renders the partial: a view can then skip what only the full page shows."""
    return bool(request.htmx and not request.htmx.boosted)


class VaryOnHtmxMiddleware:
    """Full pages and partials share URLs, so caches must key on HX-Request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        patch_vary_headers(response, ("HX-Request",))
        return response
