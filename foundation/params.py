"""Declared parameters: what a policy rule or an alert condition takes, its default, its bounds, how a form's or
the API's value is cleaned, and how two assignments' values merge into the strictest one."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from django import forms


def clean_all(params: tuple[Param, ...] | list[Param], values: dict) -> dict:
    """Every declared parameter's cleaned value (defaults for those not given); ParamError naming each bad one, and
    any value given that nothing declares."""
    errors, cleaned = {}, {}
    known = {p.name for p in params}
    for name in values:
        if name not in known:
            errors[name] = "unknown parameter"
    for param in params:
        try:
            cleaned[param.name] = param.clean(values.get(param.name))
        except ValueError as exc:
            errors[param.name] = str(exc)
    if errors:
        raise ParamError(errors)
    return cleaned


class ParamError(ValueError):
    """Parameters a rule refuses; `errors` maps each parameter to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclasses.dataclass(frozen=True)
class Param:
    """One declared parameter (of a policy rule, of an alert condition): `kind` is int, float, bool, str or list
    (of strings); `clean` turns what a form or the API sent into the value, or says why not."""

    name: str
    kind: str
    default: object
    help: str
    min_value: int | float | None = None
    max_value: int | float | None = None
    required: bool = False  # a list that must not be empty
    pattern: str | None = None  # each string (or list item) must match
    check_item: Callable[[str], str] | None = None  # a list item's problem ("" when fine), after `pattern`
    # How two assignments' values become the strictest one, when two groups assign the rule to one cluster:
    # "union" (every item required), "intersection" (only items every assignment allows), "any" (required if
    # either requires it), "max" or "min".
    merge: str = ""
    label: str = ""  # what a form calls it (default: its name)

    def strictest(self, values: list) -> object:
        """The strictest of several assignments' (cleaned) values, by `merge`."""
        if self.merge == "union":
            return list(dict.fromkeys(item for value in values for item in value))
        if self.merge == "intersection":
            return [item for item in values[0] if all(item in value for value in values[1:])]
        if self.merge == "any":
            return any(values)
        if self.merge in ("max", "min"):
            return max(values) if self.merge == "max" else min(values)
        raise ValueError(f"parameter {self.name}: unknown merge '{self.merge}'")

    def form_field(self, *, required: bool = True) -> forms.Field:
        """The form field that asks for it (the value is cleaned again by `clean`); `required=False`: blank keeps
        what there was."""
        label = self.label or self.name
        low, high = self.min_value, self.max_value
        if self.kind == "bool":
            return forms.BooleanField(required=False, initial=self.default, help_text=self.help, label=label)
        if self.kind == "int":
            return forms.IntegerField(initial=self.default, help_text=self.help, label=label, required=required,
                                      min_value=None if low is None else int(low),
                                      max_value=None if high is None else int(high))
        if self.kind == "float":
            return forms.FloatField(initial=self.default, help_text=self.help, label=label, required=required,
                                    min_value=None if low is None else float(low),
                                    max_value=None if high is None else float(high))
        if self.kind == "list":
            values = self.default if isinstance(self.default, list | tuple) else []
            return forms.CharField(required=False, initial="\n".join(str(v) for v in values),
                                   help_text=self.help + " (one per line)", widget=forms.Textarea(attrs={"rows": 3}),
                                   label=label)
        return forms.CharField(required=False, initial=self.default, help_text=self.help, label=label)

    def clean(self, value) -> object:
        if value is None or value == "":
            value = self.default
        if self.kind == "int":
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ValueError(f"'{value}' is not a whole number") from None
            if self.min_value is not None and value < self.min_value:
                raise ValueError(f"must be at least {self.min_value}")
            if self.max_value is not None and value > self.max_value:
                raise ValueError(f"must be at most {self.max_value}")
            return value
        if self.kind == "float":
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"'{value}' is not a number") from None
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"'{value}' is not a number")
            if self.min_value is not None and value < self.min_value:
                raise ValueError(f"must be at least {self.min_value}")
            if self.max_value is not None and value > self.max_value:
                raise ValueError(f"must be at most {self.max_value}")
            return value
        if self.kind == "bool":
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "on", "off", "1", "0", "yes", "no"):
                    raise ValueError(f"'{value}' is not true or false")
                return value.lower() in ("true", "on", "1", "yes")
            return bool(value)
        if self.kind == "list":
            if isinstance(value, str):
                value = [v for v in (part.strip() for part in value.replace("\n", ",").split(",")) if v]
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ValueError("must be a list of strings")
            value = list(dict.fromkeys(v.strip() for v in value if v.strip()))
            if self.required and not value:
                raise ValueError("give at least one value")
            for item in value:
                if self.pattern and not re.fullmatch(self.pattern, item):
                    raise ValueError(f"'{item}' is not valid here")
                if self.check_item and (problem := self.check_item(item)):
                    raise ValueError(problem)
            return value
        if not isinstance(value, str):
            raise ValueError("must be text")
        return value
