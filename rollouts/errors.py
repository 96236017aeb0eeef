"""The error every rollouts service raises, and the one permission check for changing an application: below the
front door (`rollouts.services`) and the back office (`rollouts.corrections`), which both use them."""

from __future__ import annotations

from foundation.errors import ServiceError
from inventory.people.access import can
from rollouts.models import Application


class RolloutError(ServiceError):
    """A request Fleetweb refuses; `errors` maps fields to messages; `status`: 400 bad input, 403 not yours to
    do, 409 not possible now."""

    def __init__(self, errors: dict[str, str] | str, *, conflict: bool = False, status: int | None = None):
        super().__init__(errors, status=409 if conflict else (status or 400))


def check_change(user, app: Application) -> None:
    """Changing an application or acting on its rollouts: global operators and its owner team's operators."""
    if user is not None and not can(user, "change_application", app):
        team = f" in team {app.owner_team.name}." if app.owner_team is not None else "."
        raise RolloutError(f"This action needs the operator role{team}", status=403)
