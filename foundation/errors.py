"""The one error type of every refusal a service makes, and its two translations: to the API's error body
(`foundation.api.exception_handler`) and onto a form (`add_to_form`, for pages and HTMX partials)."""

from __future__ import annotations

from collections.abc import Callable

NON_FIELD = "__all__"


class ServiceError(ValueError):
    """A change Fleetweb refuses. `errors` maps input fields ("params.NAME" for a rule parameter, "__all__" when no
    field is at fault) to one message each; `status` is 400 (bad input), 403 (not yours to do), 404 or 409 (not
    possible now)."""

    def __init__(self, errors: dict[str, str] | str, *, field: str = NON_FIELD, status: int = 400):
        if isinstance(errors, str):
            errors = {field: errors}
        self.errors: dict[str, str] = {(NON_FIELD if k == "detail" else k): v for k, v in errors.items()}
        self.status = status
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return "; ".join(self.errors.values())

    @property
    def field(self) -> str:
        """The first field at fault ("__all__" when none)."""
        return next(iter(self.errors), NON_FIELD)

    @property
    def conflict(self) -> bool:
        return self.status == 409

    def api_errors(self) -> dict:
        """{field: [message]} as DRF writes them: "non_field_errors", and params.NAME nested under "params"."""
        out: dict = {}
        for field, message in self.errors.items():
            if field.startswith("params."):
                out.setdefault("params", {})[field.removeprefix("params.")] = [message]
            else:
                out["non_field_errors" if field == NON_FIELD else field] = [message]
        return out


def add_to_form(form, exc: ServiceError, *, field_name: Callable[[str], str] | None = None,
                name_unknown: bool = True) -> None:
    """Put a refusal's messages on the form: on the field when the form has it, else at the top (prefixed with the
    field's name when `name_unknown`)."""
    for field, message in exc.errors.items():
        name = field_name(field) if field_name else field
        if name in form.fields:
            form.add_error(name, message)
        else:
            form.add_error(None, message if field == NON_FIELD or not name_unknown else f"{field}: {message}")
