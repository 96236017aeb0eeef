"""Kubernetes-style label selectors over clusters: `environment=prod,region in (eu-west,eu-north),tier!=edge`.

The syntax is Kubernetes' own (labels.Parse): requirements separated by commas, each one of
`key`, `!key`, `key=value`, `key==value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`.
Keys in FIELDS match the cluster's own fields; every other key matches its labels. As in
Kubernetes, `key!=value` and `key notin (...)` also match clusters that lack the key.

Selectors decide team scopes and stage targets, so they read only what the platform set (at attach or edit): the
provider Fleetweb detects from a member's nodes, its versions and node labels are the member's own words and
are no field here (`provider=aws` matches a label the platform gave the cluster).

A selector compiles both to a Django `Q` (lists, the API) and to a Python predicate (computing
the groups of many clusters at once); tests hold the two to the same answers.
"""

from __future__ import annotations

import dataclasses
import re
from functools import reduce
from operator import or_

from django.db.models import Q

FIELDS = ("name", "environment", "region", "owner", "cost_center")
_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TOKEN = re.compile(r"\s*(?:(?P<op>==|!=|=|!|\(|\)|,)|(?P<word>[^\s,()=!<>]+))")
_UNSUPPORTED = re.compile(r"\s*[<>]")


class SelectorError(ValueError):
    """A selector that does not parse; `position` is the 0-based offset of the fault."""

    def __init__(self, message: str, position: int):
        super().__init__(f"{message} (at position {position + 1})")
        self.message = message
        self.position = position


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # exists, !exists, =, !=, in, notin
    values: tuple[str, ...] = ()

    @property
    def is_field(self) -> bool:
        return self.key in FIELDS

    def q(self) -> Q:
        if self.is_field:
            present = ~Q(**{self.key: ""})
            positive = {
                "exists": present,
                "!exists": ~present,
                "=": Q(**{self.key: self.values[0]}) if self.values else Q(),
                "in": Q(**{f"{self.key}__in": self.values}),
            }
        else:
            # Containment keeps keys with dots and slashes (example.com/tier) out of the lookup path.
            match_any = reduce(or_, (Q(labels__contains={self.key: v}) for v in self.values), Q(pk__in=[]))
            present = Q(labels__has_key=self.key)
            positive = {"exists": present, "!exists": ~present, "=": match_any, "in": match_any}
        if self.op in positive:
            return positive[self.op]
        return ~positive["=" if self.op == "!=" else "in"]

    def matches(self, fields: dict, labels: dict) -> bool:
        if self.is_field:  # a field is never absent: an empty one is ""
            value = fields.get(self.key) or ""
            if self.op in ("exists", "!exists"):
                return (value != "") == (self.op == "exists")
        else:
            value = labels.get(self.key)
        if self.op == "exists":
            return value is not None
        if self.op == "!exists":
            return value is None
        if self.op in ("=", "in"):
            return value is not None and value in self.values
        return value is None or value not in self.values

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!exists":
            return f"!{self.key}"
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        return f"{self.key}{self.op}{self.values[0]}"


@dataclasses.dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...]

    @property
    def is_empty(self) -> bool:
        return not self.requirements

    def q(self) -> Q:
        """Matching clusters; an empty selector matches none (a group then has only static members)."""
        if self.is_empty:
            return Q(pk__in=[])
        return reduce(lambda a, b: a & b, (r.q() for r in self.requirements))

    def matches(self, cluster) -> bool:
        if self.is_empty:
            return False
        fields = {f: getattr(cluster, f, "") for f in FIELDS}
        labels = cluster.labels or {}
        return all(r.matches(fields, labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    tokens = []
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        if _UNSUPPORTED.match(text, pos):
            at = pos + len(text[pos:]) - len(text[pos:].lstrip())
            raise SelectorError(f"operator '{text[at]}' is not supported; use =, !=, in, notin, key or !key", at)
        m = _TOKEN.match(text, pos)
        if not m:  # pragma: no cover - the pattern accepts every non-space character
            raise SelectorError("unexpected character", pos)
        start = m.start("op") if m.group("op") else m.start("word")
        kind = "op" if m.group("op") else "word"
        tokens.append((kind, m.group(kind), start))
        pos = m.end()
    tokens.append(("end", "", len(text)))
    return tokens


def _check_key(key: str, at: int) -> None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _PREFIX.match(prefix)):
        raise SelectorError(f"'{key}' has an invalid prefix: it must be a DNS subdomain such as example.com", at)
    if not _NAME.match(name):
        raise SelectorError(f"'{key}' is not a valid key: up to 63 letters, digits, '-', '_' or '.', starting "
                            "and ending with a letter or digit", at)


def _check_value(value: str, at: int) -> None:
    if value and not _NAME.match(value):
        raise SelectorError(f"'{value}' is not a valid value: up to 63 letters, digits, '-', '_' or '.', starting "
                            "and ending with a letter or digit", at)


def parse(text: str) -> Selector:
    """Parse a selector or raise SelectorError naming the position of the first fault."""
    return _Parser(_tokens(text or "")).selector()


class _Parser:
    """Recursive descent over the tokens: selector := requirement (',' requirement)*."""

    def __init__(self, tokens: list[tuple[str, str, int]]):
        self.tokens, self.i = tokens, 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, str, int]:
        self.i += 1
        return self.tokens[self.i - 1]

    def selector(self) -> Selector:
        if self.peek()[0] == "end":
            return Selector(())
        requirements = [self.requirement()]
        while True:
            kind, value, at = self.take()
            if kind == "end":
                return Selector(tuple(requirements))
            if value != ",":
                raise SelectorError(f"expected ',' between requirements, found '{value}'", at)
            if self.peek()[0] == "end":
                raise SelectorError("expected a requirement after ','", self.peek()[2])
            requirements.append(self.requirement())

    def requirement(self) -> Requirement:
        kind, value, at = self.take()
        negated = kind == "op" and value == "!"
        if negated:
            kind, value, at = self.take()
        if kind != "word":
            raise SelectorError("expected a key" + (f", found '{value}'" if value else " at the end"), at)
        key = value
        if key in ("in", "notin"):
            raise SelectorError(f"expected a key, found the operator '{key}'", at)
        _check_key(key, at)
        kind, value, op_at = self.peek()
        at_boundary = kind == "end" or value == ","
        if negated:
            if not at_boundary:
                raise SelectorError("'!key' takes no operator or value", op_at)
            return Requirement(key, "!exists")
        if at_boundary:
            return Requirement(key, "exists")
        if kind == "op" and value in ("=", "==", "!="):
            self.take()
            return Requirement(key, "!=" if value == "!=" else "=", (self.equality_value(value),))
        if kind == "word" and value in ("in", "notin"):
            self.take()
            return Requirement(key, value, self.value_list(value))
        raise SelectorError(f"expected '=', '!=', 'in' or 'notin' after '{key}'", op_at)

    def equality_value(self, op: str) -> str:
        kind, value, at = self.peek()
        if kind == "word" and value not in ("in", "notin"):
            self.take()
            _check_value(value, at)
            return value
        if kind == "end" or value == ",":
            return ""  # `key=` selects an empty value, as in Kubernetes
        raise SelectorError(f"expected a value after '{op}'", at)

    def value_list(self, op: str) -> tuple[str, ...]:
        _kind, value, at = self.take()
        if value != "(":
            raise SelectorError(f"expected '(' after '{op}'", at)
        values: list[str] = []
        while True:
            kind, value, at = self.take()
            if kind == "word":
                _check_value(value, at)
                values.append(value)
                kind, value, at = self.take()
            elif value == ")" and not values:
                raise SelectorError(f"'{op}' needs at least one value", at)
            if value == ")":
                return tuple(values)
            if value != ",":
                raise SelectorError("expected ',' or ')' in the value list", at)
