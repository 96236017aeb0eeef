"""Filtered, paginated list pages (clusters, workloads, violations, the audit log): one way to read a filterset."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import QuerySet


def filtered(filterset) -> QuerySet:
    """The filterset's rows when its input is valid, else all it may show (its errors are shown beside)."""
    return filterset.qs if filterset.is_bound and filterset.is_valid() else filterset.queryset


def filtered_page(request, filterset, *, queryset: QuerySet | None = None, page_size: int = 50) -> dict:
    """Context of a list page: the page of `queryset` (default: the filterset's rows), the filters, the query
    string without `page` (for pager and export links), and the filter errors."""
    rows = filtered(filterset) if queryset is None else queryset
    page = Paginator(rows, page_size).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return {"filterset": filterset, "page": page, "query": query.urlencode(),
            "errors": filterset.errors if filterset.is_bound else {}}
