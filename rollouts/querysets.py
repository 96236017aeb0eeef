"""Access to rollouts: every role holder reads; outsiders see nothing."""

from __future__ import annotations

from django.db import models

from fleetweb.roles import VIEWER, has_role


class RolloutsQuerySet(models.QuerySet):
    def visible_to(self, user) -> RolloutsQuerySet:
        return self if has_role(user, VIEWER) else self.none()
