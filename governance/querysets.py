"""Who reads governance data."""

from __future__ import annotations

from django.db import models

from fleetweb.roles import VIEWER, has_role


class GovernanceQuerySet(models.QuerySet):
    def visible_to(self, user) -> GovernanceQuerySet:
        """Policies, violations and compliance: every role holder reads them; outsiders see nothing."""
        return self if has_role(user, VIEWER) else self.none()
