"""Global roles as Django groups: viewer < operator < admin (approver is separate, for rollouts).

Pages and API ask the same question through `has_role`, so they cannot disagree. `has_role` is about global
(platform-wide) roles only; a role held in a team counts through `has_role_anywhere`, which lets a team member
reach a page whose objects are then scoped (`visible_to`) and checked (`inventory.teams.can`). The team roles
come from the provider the inventory app registers (`register_team_roles`), as this bottom layer cannot import
it.
"""

from __future__ import annotations

from collections.abc import Callable

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


def implied(role: str) -> set[str]:
    """The role and every role it implies."""
    return set(_IMPLIES.get(role, {role}))


_team_roles: Callable[[User | AnonymousUser], set[str]] | None = None


def register_team_roles(provider: Callable[[User | AnonymousUser], set[str]]) -> None:
    """The inventory app's `team_roles_anywhere`, set once at start-up."""
    global _team_roles
    _team_roles = provider


def roles_anywhere(user: User | AnonymousUser) -> set[str]:
    """Global roles plus every role held in any team."""
    roles = roles_of(user)
    if roles >= set(ROLES) or _team_roles is None or not user.is_authenticated:
        return roles
    return roles | _team_roles(user)


def has_role_anywhere(user: User | AnonymousUser, role: str) -> bool:
    """True when the user holds `role` globally or in at least one team."""
    return role in roles_anywhere(user)


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
    """Template context: `roles.operator`, `roles.admin`, … (global roles) and `team_roles.operator`, … (held
    anywhere) for showing or hiding links; buttons on one object ask `inventory.teams.can` (the `can` tag)."""
    user = getattr(request, "user", None)
    roles = roles_of(user) if user is not None else set()
    anywhere = roles_anywhere(user) if user is not None else set()
    return {"roles": {role: role in roles for role in ROLES},
            "team_roles": {role: role in anywhere for role in ROLES}}


class RolePermission(BasePermission):
    """API: reading needs viewer (globally or in a team: the rows are scoped), writing needs operator; a view
    may demand more with `required_role`, and lets team roles write with `team_roles = True` (its service then
    checks the object with `can`). A read-only token writes nothing."""

    message = "Your account lacks the role this action needs."

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        safe = request.method in SAFE_METHODS
        if not safe and getattr(request.auth, "read_only", False):
            self.message = "This API token is read-only."
            return False
        self.message = RolePermission.message
        required = getattr(view, "required_role", None)
        if required is None:
            required = VIEWER if safe else OPERATOR
        if required == VIEWER or getattr(view, "team_roles", False):
            return has_role_anywhere(request.user, required)
        return has_role(request.user, required)
