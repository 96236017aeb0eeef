"""What can alert: the event types the apps register, each with its label and, for a condition, the function that
finds it and the parameters a rule gives it.

Two kinds:

- a **condition** (`condition=`) is found by beat every FLEETWEB_ALERT_INTERVAL seconds: `fn(rule, scope, now)`
  returns (findings by subject key, keys to leave as they are for now); a rule keeps one Alert per subject, opened
  once and closed once by its recovery (`notifications.alerting`);
- an **event** (no condition) is sent as it happens, by the app that made it (`alerting.emit`).

Each app registers its own in its `AppConfig.ready` (notifications: the clusters'; governance: group scores,
enforcement, violations; rollouts: drift and rollouts), so no app names another's events. A condition's parameters
are declared as policy rules declare theirs (`foundation.params.Param`): a rule's form, its API and its service read
them from here, and their names are one namespace across events (a rule holds one value per name).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from foundation.params import Param, ParamError, clean_all


@dataclasses.dataclass(frozen=True)
class Event:
    key: str  # "cluster.status": what rules list and messages carry
    label: str  # what the rule form shows beside its checkbox
    condition: Callable | None = None  # fn(rule, scope or None, now) -> (findings by key, keys held)
    params: tuple[Param, ...] = ()


EVENTS: dict[str, Event] = {}


def register(event: Event) -> Event:
    """Add an event type; a parameter name another event declares differently is refused (one value per name)."""
    if event.key in EVENTS and EVENTS[event.key] != event:
        raise ValueError(f"event {event.key} is registered twice")
    for param in event.params:
        for other in EVENTS.values():
            for theirs in other.params:
                if theirs.name == param.name and theirs != param and other.key != event.key:
                    raise ValueError(f"parameter {param.name} of {event.key} differs from {other.key}'s")
    EVENTS[event.key] = event
    return event


def condition(key: str, label: str, *, params: tuple[Param, ...] = ()) -> Callable:
    """Register the decorated function as the condition `key`."""
    def decorator(fn: Callable) -> Callable:
        register(Event(key, label, condition=fn, params=params))
        return fn
    return decorator


def choices() -> list[tuple[str, str]]:
    """(key, label) of every event, in registration order."""
    return [(e.key, e.label) for e in EVENTS.values()]


def conditions() -> dict[str, Callable]:
    return {key: e.condition for key, e in EVENTS.items() if e.condition is not None}


def params() -> list[Param]:
    """Every declared parameter, once, in registration order."""
    seen: dict[str, Param] = {}
    for event in EVENTS.values():
        for param in event.params:
            seen.setdefault(param.name, param)
    return list(seen.values())


def clean_params(values: dict) -> dict:
    """A rule's parameters: every declared one cleaned (defaults for those not given); ParamError naming each bad
    one."""
    return clean_all(params(), values)


def param(rule, name: str) -> Any:
    """A rule's value of a declared parameter (the default when the rule predates it)."""
    value = (rule.params or {}).get(name)
    declared = next((p for p in params() if p.name == name), None)
    if declared is None:
        raise KeyError(name)
    return declared.default if value is None else value


__all__ = ["Event", "Param", "ParamError", "choices", "clean_params", "condition", "conditions", "param", "params",
           "register"]
