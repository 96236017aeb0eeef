"""Access to the audit log: admins read all of it; nobody else does."""

from django.db import models

from fleetweb.roles import ADMIN, has_role


class AuditEventQuerySet(models.QuerySet):
    def visible_to(self, user):
        return self if has_role(user, ADMIN) else self.none()


class GovernanceQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Policies, violations and compliance: every role holder reads them; outsiders see nothing."""
        from fleetweb.roles import VIEWER

        return self if has_role(user, VIEWER) else self.none()
