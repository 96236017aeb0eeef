"""Roles as Django groups: viewer < operator < admin (approver is separate, for rollouts).

Pages and API ask the same question through `has_role`, so they cannot disagree.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from rest_framework.permissions import SAFE_METHODS, BasePermission

VIEWER = "viewer"
OPERATOR = "operator"
APPROVER = "approver"
ADMIN = "admin"
ROLES = (VIEWER, OPERATOR, APPROVER, ADMIN)

# A role implies the roles listed after it.
_IMPLIES = {ADMIN: {ADMIN, OPERATOR, VIEWER}, OPERATOR: {OPERATOR, VIEWER}, APPROVER: {APPROVER, VIEWER},
            VIEWER: {VIEWER}}


def roles_of(user: User | AnonymousUser) -> set[str]:
    """Every role the user holds, directly or implied; cached on the user object for the request."""
    if not user.is_authenticated or not user.is_active:
        return set()
    cached = getattr(user, "_fleetweb_roles", None)
    if cached is not None:
        return cached
    if user.is_superuser:
        roles = set(ROLES)
    else:
        roles = set()
        for name in user.groups.filter(name__in=ROLES).values_list("name", flat=True):
            roles |= _IMPLIES[name]
    user._fleetweb_roles = roles  # type: ignore[union-attr,attr-defined]  # a per-request cache on the user
    return roles


def has_role(user: User | AnonymousUser, role: str) -> bool:
    """True when the user holds `role` or a role that implies it."""
    return role in roles_of(user)


def roles_context(request) -> dict:
    """Template context: `roles.operator`, `roles.admin`, … for showing or hiding buttons."""
    roles = roles_of(request.user) if hasattr(request, "user") else set()
    return {"roles": {role: role in roles for role in ROLES}}


class RolePermission(BasePermission):
    """API: reading needs viewer, writing needs operator; a view may demand more with `required_role`."""

    message = "Your account lacks the role this action needs."

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        required = getattr(view, "required_role", None)
        if required is None:
            required = VIEWER if request.method in SAFE_METHODS else OPERATOR
        return has_role(request.user, required)
