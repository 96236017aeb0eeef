"""Access to rollouts: global roles read all; a team member reads the applications their team owns or approves,
and their revisions, overrides, rollouts, stages, targets and approvals (each model's `visibility`)."""

from __future__ import annotations

from inventory.querysets import ScopedQuerySet, Visibility


def through_application(path: str = "application") -> Visibility:
    """Visible with the application at `path` (owner team or approver team)."""
    return Visibility(team=(f"{path}__owner_team_id", f"{path}__approver_team_id"))


class RolloutsQuerySet(ScopedQuerySet):
    pass
