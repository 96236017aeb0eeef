"""The change calendar: which windows hold which clusters (`rollouts.windows` decides when), the services that
create, change and delete windows, and an admin's emergency override of a stage's windows.

Every door that changes a cluster asks `decisions` (rollout stages through `gates.WindowGate`, Re-apply and drift
correction through `corrections`); every door that changes a window goes through `save_window` / `delete_window`
and their one permission check (`manage_windows`: a team's operators for the team's windows, admins for all)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime, parse_time

from foundation.audit import record
from inventory import selectors
from inventory.choices import Environment
from inventory.models import Cluster, ClusterGroup, Team
from inventory.people.access import cluster_scope, conditions_of, require
from inventory.services import membership
from rollouts import windows
from rollouts.alerts import notify
from rollouts.choices import RolloutState, StageState
from rollouts.errors import RolloutError
from rollouts.models import ChangeWindow, Rollout, Stage
from rollouts.services import kick

FIELDS = ("name", "kind", "reason", "zone", "weekdays", "start_time", "end_time", "starts_at", "ends_at", "selector",
          "environments", "enabled")


def schedule_of(window: ChangeWindow) -> windows.Schedule:
    return windows.Schedule(zone=window.zone, weekdays=tuple(window.weekdays or ()), start=window.start_time,
                            end=window.end_time, starts_at=window.starts_at, ends_at=window.ends_at)


def rule_of(window: ChangeWindow) -> windows.Rule:
    return windows.Rule(pk=window.pk, name=window.name, kind=window.kind, reason=window.reason,
                        schedule=schedule_of(window))


def holding(clusters: list[Cluster], *, include_disabled: bool = False) -> dict[int, list[ChangeWindow]]:
    """{cluster id: the windows that apply to it} for these clusters: its groups' or selector's (every cluster's
    when a window names neither), in the window's environments (all when none), and a team's window only within that
    team's scope. A few queries whatever the number of windows and clusters."""
    found: dict[int, list[ChangeWindow]] = {c.pk: [] for c in clusters}
    rows = list(ChangeWindow.objects.filter(**({} if include_disabled else {"enabled": True}))
                .prefetch_related("groups"))
    if not rows or not clusters:
        return found
    groups = {g.pk: g for w in rows for g in w.groups.all()}
    members = {pk: {c.pk for c in cs} for pk, cs in membership(list(groups.values()), clusters).items()}
    teams = {w.team_id for w in rows if w.team_id}
    in_team: dict[int, set[int]] = {}
    if teams:
        conditions = conditions_of(Team.objects.filter(pk__in=teams))
        ids = [c.pk for c in clusters]
        for team_id, condition in conditions.items():
            in_team[team_id] = set(Cluster.objects.filter(condition, pk__in=ids).values_list("pk", flat=True))
    for w in rows:
        chosen = [g.pk for g in w.groups.all()]
        for c in clusters:
            if w.environments and c.environment not in w.environments:
                continue
            if w.team_id and c.pk not in in_team.get(w.team_id, ()):
                continue
            if (chosen or w.selector) and not (any(c.pk in members[g] for g in chosen)
                                               or (w.selector and w.parsed_selector.matches(c))):
                continue
            found[c.pk].append(w)
    return found


def decisions(clusters: list[Cluster], now: datetime | None = None) -> dict[int, windows.Decision]:
    """{cluster id: may Fleetweb change it now (`windows.decide`)}: its windows and its busy switch."""
    now = now or timezone.now()
    held = holding(clusters)
    return {c.pk: windows.decide([rule_of(w) for w in held[c.pk]], now, busy=c.busy_reason if c.busy_since else "")
            for c in clusters}


def refusal(cluster: Cluster, now: datetime | None = None) -> str:
    """Why Fleetweb may not change the cluster now ('' when it may), in the words pages, the API and history show."""
    decision = decisions([cluster], now)[cluster.pk]
    return "" if decision.allowed else f"{cluster.name} is {decision.words()}" if decision.busy else \
        f"{cluster.name}: {decision.words()}"


# ---------------------------------------------------------------------------------------------
# Services


def _clean(fields: dict) -> dict:
    """Checked values of a window's fields (a WindowError names the field)."""
    out = dict(fields)
    name = str(out.get("name") or "").strip()
    if not name or len(name) > 100:
        raise windows.WindowError("name", "A window needs a name of 1 to 100 characters.")
    out["name"] = name
    if out.get("kind") not in (windows.ALLOW, windows.DENY):
        raise windows.WindowError("kind", "Kind is 'allow' (changes only then) or 'deny' (a freeze).")
    reason = str(out.get("reason") or "").strip()
    if not reason or len(reason) > 500:
        raise windows.WindowError("reason", "Say why, in 1 to 500 characters: people waiting for it read this.")
    out["reason"] = reason
    for key in ("start_time", "end_time"):
        if isinstance(out.get(key), str):
            parsed = parse_time(out[key]) if out[key] else None
            if out[key] and parsed is None:
                raise windows.WindowError(key, f"{key}: a time such as 15:00.")
            out[key] = parsed
    for key in ("starts_at", "ends_at"):
        if isinstance(out.get(key), str):
            try:
                parsed_at = parse_datetime(out[key]) if out[key] else None
            except ValueError:
                parsed_at = None
            if out[key] and parsed_at is None:
                raise windows.WindowError(key, f"{key}: a date and time with its offset, e.g. 2026-12-24T00:00+01:00.")
            out[key] = parsed_at
    weekdays = out.get("weekdays") or []
    if not isinstance(weekdays, list | tuple) or len(weekdays) > 7:
        raise windows.WindowError("weekdays", "Weekdays are a list of 0 (Monday) to 6 (Sunday).")
    schedule = windows.schedule(zone=str(out.get("zone") or "UTC"), weekdays=weekdays, start=out.get("start_time"),
                                end=out.get("end_time"), starts_at=out.get("starts_at"), ends_at=out.get("ends_at"))
    out.update(zone=schedule.zone, weekdays=list(schedule.weekdays))
    selector = str(out.get("selector") or "").strip()
    if selector:
        try:
            selectors.parse(selector)
        except selectors.SelectorError as exc:
            raise windows.WindowError("selector", str(exc)) from None
    out["selector"] = selector
    environments = out.get("environments") or []
    if not isinstance(environments, list | tuple) or any(e not in Environment.values for e in environments):
        raise windows.WindowError("environments", f"Environments are some of {', '.join(Environment.values)}.")
    out["environments"] = sorted(set(environments))
    out["enabled"] = bool(out.get("enabled", True))
    return {k: out.get(k) for k in FIELDS}


def _view(window: ChangeWindow) -> dict:
    """What the audit log keeps of a window."""
    return {"name": window.name, "kind": window.kind, "reason": window.reason,
            "schedule": schedule_of(window).describe(), "groups": sorted(g.name for g in window.groups.all()),
            "selector": window.selector, "environments": window.environments,
            "team": window.team.name if window.team is not None else None, "enabled": window.enabled}


def _permission(user, team: Team | None) -> None:
    require(user, "manage_windows", team, message=(
        "A platform window (no team) is the admins' to make, change or lift." if team is None else
        f"Only {team.name}'s operators (and admins) make, change or lift its windows."))


def save_window(*, user, team: Team | None = None, groups: list[ClusterGroup] | tuple = (),
                window: ChangeWindow | None = None, source_ip: str = "", **fields) -> ChangeWindow:
    """Create a window, or change `window` (its team stays). A team's window reaches only that team's clusters, and
    only groups the user sees may be named. Audited; rollouts held by windows are looked at again."""
    if window is not None:
        team = window.team
    _permission(user, team)
    try:
        clean = _clean(fields)
    except windows.WindowError as exc:
        raise RolloutError({exc.field: exc.message}) from None
    visible = set(ClusterGroup.objects.visible_to(user).values_list("pk", flat=True)) if user is not None else None
    if visible is not None and any(g.pk not in visible for g in groups):
        raise RolloutError({"groups": "Only groups you can see may be named."}, status=403)
    taken = ChangeWindow.objects.filter(name=clean["name"])
    if window is not None:
        taken = taken.exclude(pk=window.pk)
    if taken.exists():
        raise RolloutError({"name": f"A window named {clean['name']!r} exists already."}, conflict=True)
    with transaction.atomic():
        before = _view(window) if window is not None else None
        if window is None:
            window = ChangeWindow(team=team, created_by=user if getattr(user, "pk", None) else None)
        for key, value in clean.items():
            setattr(window, key, value)
        window.save()
        window.groups.set(groups)
        record(user=user, action="window.create" if before is None else "window.update", target=window,
               source_ip=source_ip, before=before, after=_view(window))
        _wake_held()
    return window


def delete_window(window: ChangeWindow, *, user, source_ip: str = "") -> None:
    _permission(user, window.team)
    with transaction.atomic():
        before = _view(window)
        record(user=user, action="window.delete", target=window, source_ip=source_ip, before=before)
        window.delete()
        _wake_held()


def _wake_held() -> None:
    """Rollouts with a stage held by a window look again (it may have moved, closed or gone)."""
    for rollout in Rollout.objects.filter(state=RolloutState.RUNNING, stages__window_hold__has_key="clusters"
                                          ).distinct():
        kick(rollout)


def override_stage(stage: Stage, *, user, reason: str, source_ip: str = "") -> Stage:
    """An admin's emergency override: the stage's change windows no longer hold it (a busy cluster still does, and
    every other gate, approvals included, still holds). Audited and announced to whoever follows the rollout."""
    require(user, "override_window", None, message="Only admins may override a change window.")
    reason = (reason or "").strip()
    if not reason or len(reason) > 500:
        raise RolloutError({"reason": "Say why the window is overridden, in 1 to 500 characters."})
    with transaction.atomic():
        stage = Stage.objects.select_for_update().select_related("rollout").get(pk=stage.pk)
        if stage.state not in (StageState.PENDING, StageState.AWAITING_APPROVAL):
            raise RolloutError(f"Stage {stage.name!r} has started already: there is no window to override.",
                               conflict=True)
        stage.window_override = {"by": user.get_username() if user is not None else "system", "reason": reason,
                                 "at": timezone.now().isoformat()}
        stage.save(update_fields=["window_override"])
        record(user=user, action="rollout.window_override", target=stage.rollout, source_ip=source_ip,
               target_name=f"rollout #{stage.rollout_id} stage {stage.name}",
               after={"stage": stage.name, "reason": reason, "held_by": stage.window_hold})
        notify("stage.window_overridden", stage.rollout, stage=stage)
        kick(stage.rollout)
    return stage


def shown_groups(window: ChangeWindow, user) -> list[str]:
    """The names of a window's groups the reader may see (a platform window's others are not named); the reader's
    visible groups are read once per request, however many windows are shown."""
    visible = getattr(user, "_fleetweb_visible_groups", None)
    if visible is None:
        visible = set(ClusterGroup.objects.visible_to(user).values_list("pk", flat=True))
        user._fleetweb_visible_groups = visible
    return sorted(g.name for g in window.groups.all() if g.pk in visible)


def visible_windows(user) -> list[ChangeWindow]:
    """The windows a user may read: all of them for a global role; for a team member, the team's windows and the
    platform windows that hold at least one cluster in the member's scope."""
    rows = list(ChangeWindow.objects.select_related("team").prefetch_related("groups").order_by("name", "pk"))
    if user is None or cluster_scope(user) is None:  # a global role sees all
        return rows
    teams = set(Team.objects.visible_to(user).values_list("pk", flat=True))
    mine = [w for w in rows if w.team_id in teams]
    platform = [w for w in rows if w.team_id is None]
    if platform:
        clusters = list(Cluster.objects.visible_to(user).only("pk", "labels", *selectors.FIELDS))
        reached = {w.pk for ws in holding(clusters, include_disabled=True).values() for w in ws}
        platform = [w for w in platform if w.pk in reached]
    return sorted(mine + platform, key=lambda w: (w.name, w.pk))
