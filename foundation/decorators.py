"""Page access: `role_required(OPERATOR)` = logged in (else login page) and holding the role globally (else 403);
`role_required(OPERATOR, teams=True)` also admits the role held in a team (the view scopes and checks objects).
A viewer page admits team viewers always: what it shows comes from `visible_to`."""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

from foundation.roles import VIEWER, has_role, has_role_anywhere


def role_required(role: str, *, teams: bool = False) -> Callable:
    check = has_role_anywhere if teams or role == VIEWER else has_role

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapper(request, *args, **kwargs):
            if not check(request.user, role):
                raise PermissionDenied(f"This page needs the {role} role.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
