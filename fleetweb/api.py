"""API plumbing shared by every app: pagination and error bodies that name the field and why."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.views import exception_handler as drf_exception_handler


class Pagination(PageNumberPagination):
    """`?page=N&page_size=M` (at most 500)."""

    page_size_query_param = "page_size"
    max_page_size = 500


class NewestFirstCursorPagination(CursorPagination):
    """For tables of millions of rows (violations): `next`/`previous` cursors, newest first, and no COUNT(*)
    of the whole filtered table on every page. `?page_size=` up to 500."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def exception_handler(exc, context):
    """DRF's handler, with a top-level `detail` on validation errors so clients get one sentence too."""
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" not in response.data:
        fields = ", ".join(str(key) for key in response.data)
        response.data = {"detail": f"Invalid input in: {fields}.", "errors": response.data}
    return response
