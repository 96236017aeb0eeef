"""Who reads governance data: what hangs off a cluster with the cluster, assignments with their group (each
model's `visibility`); see inventory.querysets."""

from __future__ import annotations

from inventory.querysets import ScopedQuerySet


class GovernanceQuerySet(ScopedQuerySet):
    pass
