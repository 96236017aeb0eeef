"""API plumbing shared by every app: pagination and error bodies that name the field and why."""

from __future__ import annotations

from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from foundation.errors import ServiceError


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


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "Not possible in the object's current state."
    default_code = "conflict"


def as_api_exception(exc: ServiceError) -> APIException:
    """The one translation of a service's refusal for the API: 400 names the fields, 403/404/409 say why."""
    if exc.status == 403:
        return PermissionDenied(exc.message)
    if exc.status == 404:
        return NotFound(exc.message)
    if exc.status == 409:
        return Conflict(exc.message)
    return ValidationError(exc.api_errors())


def exception_handler(exc, context) -> Response | None:
    """DRF's handler, every error body as {"detail": one sentence, "errors": {field: [messages]}}; a service's
    ServiceError reaching it is translated here, so views and serializers need not catch it."""
    if isinstance(exc, ServiceError):
        exc = as_api_exception(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, dict) and "detail" not in data:
        fields = ", ".join(str(key) for key in data)
        response.data = {"detail": f"Invalid input in: {fields}.", "errors": data}
    elif isinstance(data, dict):
        response.data = {"errors": {}, **data}
    elif isinstance(data, list):
        response.data = {"detail": " ".join(str(item) for item in data), "errors": {"non_field_errors": data}}
    return response


ERROR_SCHEMA = {
    "type": "object",
    "required": ["detail", "errors"],
    "properties": {
        "detail": {"type": "string", "description": "One sentence saying what is wrong."},
        "errors": {"type": "object", "description": "Field name -> messages (empty when no field is at fault).",
                   "additionalProperties": {}},
    },
}
ERROR_STATUSES = {
    "400": "Invalid input: `errors` names each field at fault.",
    "401": "No or invalid credentials.",
    "403": "Your role may not do this.",
    "404": "No such object (or no such page of a list).",
    "409": "Not possible in the object's current state.",
    "429": "Too many requests.",
}


def declare_errors(result: dict, generator, request, public) -> dict:
    """drf-spectacular post-processing hook: every operation declares the error statuses it can answer, with the
    one error body. 404 where the path names an object or a list has pages, 409 where the operation changes
    something."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            statuses = ["400", "401", "403"]
            if "{" in path or method == "get":
                statuses.append("404")
            if method != "get":
                statuses.append("409")
            responses = operation.setdefault("responses", {})
            for code in statuses:
                responses.setdefault(code, {
                    "description": ERROR_STATUSES[code],
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                })
    return result
