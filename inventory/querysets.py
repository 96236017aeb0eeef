"""Querysets: every view, viewset and export starts from `visible_to(user)`."""

from __future__ import annotations

from django.db import models

from fleetweb.roles import VIEWER, has_role
from inventory.choices import LONG_RUNNING


class ClusterQuerySet(models.QuerySet):
    def visible_to(self, user) -> ClusterQuerySet:
        """Clusters the user may see: all of them for any role holder, none for an outsider."""
        return self if has_role(user, VIEWER) else self.none()


class InventoryQuerySet(models.QuerySet):
    def visible_to(self, user) -> InventoryQuerySet:
        """Inventory rows of clusters the user may see."""
        return self if has_role(user, VIEWER) else self.none()


class WorkloadQuerySet(InventoryQuerySet):
    def unavailable(self) -> WorkloadQuerySet:
        """`inventory.choices.workload_unavailable` in SQL."""
        return self.filter(UNAVAILABLE)

    def available(self) -> WorkloadQuerySet:
        return self.exclude(UNAVAILABLE)


UNAVAILABLE = (models.Q(pods_crashlooping__gt=0)
               | models.Q(kind__in=LONG_RUNNING, replicas_available__lt=models.F("replicas_desired")))


class ClusterGroupQuerySet(models.QuerySet):
    def visible_to(self, user) -> ClusterGroupQuerySet:
        """Groups the user may see: all of them for any role holder, none for an outsider."""
        return self if has_role(user, VIEWER) else self.none()
