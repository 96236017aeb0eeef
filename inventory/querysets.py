"""Querysets: every view, viewset and export starts from `visible_to(user)`.

A global role (viewer, operator, approver, admin) sees the whole fleet. A team member sees the clusters in their
teams' scopes and what hangs off them; each model says how through its `visibility` (`Visibility` below), and
`inventory.teams.Access` holds the user's scope, computed once per request in a constant number of queries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Self

from django.db import models
from django.db.models import Q

from inventory.choices import LONG_RUNNING


@dataclasses.dataclass(frozen=True)
class Visibility:
    """How a scoped (team) user reaches a row: through a cluster, a group or a team it hangs off. Any path
    admits; none given (and not `everyone`) means global roles only. `everyone`: any role holder reads it."""

    cluster: str | None = None  # path to a cluster's pk
    group: str | None = None  # path to a group's pk
    team: tuple[str, ...] | str = ()  # paths to teams' pks
    everyone: bool = False

    def q(self, access) -> Q:
        q = Q(pk__in=[])
        if self.cluster == "pk":  # the row is a cluster: the scope's own condition, answered through its indexes
            q |= access.cluster_condition
        elif self.cluster:
            q |= Q(**{f"{self.cluster}__in": access.cluster_query})  # decided by the database, joinable
        if self.group:
            q |= Q(**{f"{self.group}__in": access.group_ids})
        for path in (self.team,) if isinstance(self.team, str) else self.team:
            q |= Q(**{f"{path}__in": access.team_ids})
        return q


BY_CLUSTER = Visibility(cluster="cluster_id")


# How a user's access is found: `inventory.teams.access_of`, handed over when the app is ready (`InventoryConfig`).
# The querysets sit below the models and the teams module above them; importing it here would close a circle.
_access_of: Callable[[Any], Any] | None = None


def use_access(resolver: Callable[[Any], Any]) -> None:
    """Set how `visible_to` finds a user's access (once, at start)."""
    global _access_of
    _access_of = resolver


class ScopedQuerySet(models.QuerySet):
    def visible_to(self, user) -> Self:
        """Rows the user may see: all for a global role, the team scope's for a team member, none otherwise."""
        if _access_of is None:
            raise RuntimeError("inventory.querysets.use_access was not called (is the inventory app installed?)")
        access = _access_of(user)
        if not access.roles_anywhere:
            return self.none()
        visibility: Visibility = getattr(self.model, "visibility", BY_CLUSTER)
        if access.sees_all or visibility.everyone:
            return self
        return self.filter(visibility.q(access))


class ClusterQuerySet(ScopedQuerySet):
    pass


class InventoryQuerySet(ScopedQuerySet):
    """Inventory rows: visible with their cluster."""


class WorkloadQuerySet(InventoryQuerySet):
    def unavailable(self) -> WorkloadQuerySet:
        """`inventory.choices.workload_unavailable` in SQL."""
        return self.filter(UNAVAILABLE)

    def available(self) -> WorkloadQuerySet:
        return self.exclude(UNAVAILABLE)


UNAVAILABLE = (models.Q(pods_crashlooping__gt=0)
               | models.Q(kind__in=LONG_RUNNING, replicas_available__lt=models.F("replicas_desired")))


class ClusterGroupQuerySet(ScopedQuerySet):
    pass
