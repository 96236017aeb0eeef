"""Template context: how many approvals wait for the user (the header badge)."""

from foundation.roles import APPROVER, has_role_anywhere
from rollouts.approvals import pending_approvals_for


def pending_approvals(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not has_role_anywhere(user, APPROVER):
        return {"pending_approvals": 0}
    return {"pending_approvals": pending_approvals_for(user).count()}
