"""Change windows and freezes: when Fleetweb may change a cluster.

A window is an allow window ("changes only then") or a deny window (a freeze: "never then"), in a time zone, recurring
(weekdays and local hours, ending the next day when the end is not after the start) or one-off (two instants). It
applies to the clusters of its groups or selector (all clusters when it names neither) in its environments (all when
none), and a team's window only to clusters in that team's scope: a team can hold its own clusters, never others.

A cluster may be changed at an instant when no deny window that applies to it is open then and, if any allow window
applies to it, one of them is open then; a cluster marked busy (an incident) may not be changed at all until its team
clears it. The answer changes only at the edges of the windows' occurrences, so the next instant a cluster may be
changed is the first edge at which it may (`next_open`).

Local times that do not exist (the hour skipped when clocks go forward) are read with the offset before the change,
so "02:30" on that day is 03:30 in the new offset; local times that happen twice (clocks go back) are the first.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

ALLOW, DENY = "allow", "deny"
HORIZON = timedelta(days=400)  # how far ahead `next_open` looks: a yearly window fits, a never-opening one is "never"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class WindowError(ValueError):
    """A window that cannot be: the message says which field and why."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When a window is open. Recurring: `weekdays` (0 = Monday) from `start` to `end` local time in `zone`; one-off:
    from `starts_at` to `ends_at` (aware instants)."""

    zone: str
    weekdays: tuple[int, ...] = ()
    start: time | None = None
    end: time | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    @property
    def one_off(self) -> bool:
        return self.starts_at is not None

    def occurrences(self, since: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
        """The [start, end) intervals, in UTC, of every occurrence that overlaps [since, until)."""
        if self.one_off:
            assert self.starts_at is not None and self.ends_at is not None
            start, end = self.starts_at.astimezone(UTC), self.ends_at.astimezone(UTC)
            return [(start, end)] if start < until and end > since else []
        assert self.start is not None and self.end is not None
        zone = ZoneInfo(self.zone)
        crosses = self.end <= self.start  # ends on the next local day
        day = since.astimezone(zone).date() - timedelta(days=1)  # yesterday's may still be open
        last = until.astimezone(zone).date()
        out = []
        while day <= last:
            if day.weekday() in self.weekdays:
                start = _instant(day, self.start, zone)
                end = _instant(day + timedelta(days=1) if crosses else day, self.end, zone)
                if start < until and end > since and end > start:
                    out.append((start, end))
            day += timedelta(days=1)
        return out

    def is_open(self, at: datetime) -> bool:
        return bool(self.occurrences(at, at + timedelta(microseconds=1)))

    def describe(self) -> str:
        if self.one_off:
            assert self.starts_at is not None and self.ends_at is not None
            zone = ZoneInfo(self.zone)
            start, end = self.starts_at.astimezone(zone), self.ends_at.astimezone(zone)
            return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} {self.zone}"
        assert self.start is not None and self.end is not None
        days = ", ".join(WEEKDAYS[d] for d in sorted(self.weekdays))
        later = " (next day)" if self.end <= self.start else ""
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M}{later} {self.zone}"


def _instant(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local date and time (fold=0: see the module's note on gaps and repeats)."""
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


def check_zone(name: str) -> str:
    name = (name or "").strip()
    if not name or name not in _zones():
        raise WindowError("zone", f"{name or 'An empty name'!r} is not a time zone name such as Europe/Berlin or UTC.")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError("zone", f"{name!r} is not a time zone this server knows.") from None
    return name


_ZONES: frozenset[str] | None = None


def _zones() -> frozenset[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones()) | {"UTC"}
    return _ZONES


def schedule(*, zone: str, weekdays=(), start: time | None = None, end: time | None = None,
             starts_at: datetime | None = None, ends_at: datetime | None = None) -> Schedule:
    """A checked Schedule: exactly one of recurring (weekdays, start, end) or one-off (starts_at, ends_at)."""
    zone = check_zone(zone)
    if starts_at is not None or ends_at is not None:
        if weekdays or start is not None or end is not None:
            raise WindowError("starts_at", "A window is either one-off (from, until) or recurring (weekdays and "
                                           "hours), not both.")
        if starts_at is None or ends_at is None:
            raise WindowError("ends_at" if starts_at else "starts_at", "A one-off window needs both its start and end.")
        if starts_at.tzinfo is None or ends_at.tzinfo is None:
            raise WindowError("starts_at", "A one-off window's start and end need a time zone offset.")
        if ends_at <= starts_at:
            raise WindowError("ends_at", "A one-off window must end after it starts.")
        return Schedule(zone=zone, starts_at=starts_at, ends_at=ends_at)
    days = sorted(set(weekdays))
    if not days or any(not isinstance(d, int) or isinstance(d, bool) or not 0 <= d <= 6 for d in days):
        raise WindowError("weekdays", "A recurring window needs one or more weekdays, 0 (Monday) to 6 (Sunday).")
    if start is None or end is None:
        raise WindowError("start" if start is None else "end", "A recurring window needs a start and an end time.")
    if start == end:
        raise WindowError("end", "A recurring window's end must differ from its start (an end before the start "
                                 "means the next day).")
    return Schedule(zone=zone, weekdays=tuple(days), start=start, end=end)


@dataclasses.dataclass(frozen=True)
class Rule:
    """One window as the decision needs it: its kind, its schedule, and a name and reason to show."""

    pk: int
    name: str
    kind: str
    reason: str
    schedule: Schedule


@dataclasses.dataclass(frozen=True)
class Decision:
    """May the cluster be changed now; if not, which windows hold it and when it may next (None: not within
    `HORIZON`, or only when someone clears it)."""

    allowed: bool
    holding: tuple[Rule, ...] = ()
    opens_at: datetime | None = None
    busy: str = ""  # the busy switch's reason, when that holds it

    def words(self, zone: str = "") -> str:
        if self.allowed:
            return ""
        if self.busy:
            return f"marked busy ({self.busy}) until its team clears it"
        held = "; ".join(f"{'freeze' if r.kind == DENY else 'outside allow window'} {r.name!r} ({r.reason})"
                         for r in self.holding)
        if self.opens_at is None:
            return f"{held}: no change window opens within {HORIZON.days} days"
        when = self.opens_at.astimezone(ZoneInfo(zone or self.holding[0].schedule.zone))
        return f"{held}: opens {when:%Y-%m-%d %H:%M %Z}"


def allowed_at(rules: list[Rule], at: datetime) -> tuple[bool, tuple[Rule, ...]]:
    """(may change at `at`, the windows that hold it then)."""
    denying = tuple(r for r in rules if r.kind == DENY and r.schedule.is_open(at))
    if denying:
        return False, denying
    allows = [r for r in rules if r.kind == ALLOW]
    if allows and not any(r.schedule.is_open(at) for r in allows):
        return False, tuple(allows)
    return True, ()


def next_open(rules: list[Rule], now: datetime) -> datetime | None:
    """The first instant at or after `now` when `rules` allow a change (None: not within `HORIZON`)."""
    ok, _ = allowed_at(rules, now)
    if ok:
        return now
    edges = sorted({edge for r in rules for occurrence in r.schedule.occurrences(now, now + HORIZON)
                    for edge in occurrence if edge > now})
    return next((edge for edge in edges if allowed_at(rules, edge)[0]), None)


def decide(rules: list[Rule], now: datetime, *, busy: str = "") -> Decision:
    if busy:
        return Decision(False, busy=busy)
    ok, holding = allowed_at(rules, now)
    if ok:
        return Decision(True)
    return Decision(False, holding=holding, opens_at=next_open(rules, now))
