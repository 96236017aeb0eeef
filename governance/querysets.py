"""Access to the audit log: admins read all of it; nobody else does."""

from django.db import models

from fleetweb.roles import ADMIN, has_role


class AuditEventQuerySet(models.QuerySet):
    def visible_to(self, user):
        return self if has_role(user, ADMIN) else self.none()
