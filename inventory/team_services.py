"""Every change to teams, their members and the sign-on role mapping: platform admins only, audited in the same
transaction, whatever the door (pages, API, the sign-on's login sync calls `sync_sso_roles`)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import ProtectedError

from fleetweb.audit import record
from fleetweb.errors import ServiceError
from inventory import selectors
from inventory.choices import GrantSource, TeamRole
from inventory.models import ClusterGroup, Team, TeamMember
from inventory.teams import forget, require
from inventory.validators import dns_label_problem


def _check(user) -> None:
    require(user, "manage_teams", message="Teams are managed by platform admins.")


def team_view(team: Team) -> dict:
    return {"name": team.name, "description": team.description, "selector": team.selector,
            "groups": sorted(g.name for g in team.groups.all())}


def save_team(*, user, name: str, selector: str = "", description: str = "", groups=(), team: Team | None = None,
              source_ip: str = "") -> Team:
    """Create a team (team None) or change one's description and scope; the name never changes."""
    _check(user)
    if team is None:
        if problem := dns_label_problem(name, "name"):
            raise ServiceError({"name": problem})
        if Team.objects.filter(name=name).exists():
            raise ServiceError({"name": f"A team named '{name}' already exists."})
    try:
        selectors.parse(selector)
    except selectors.SelectorError as exc:
        raise ServiceError({"selector": str(exc)}) from None
    groups = list(groups)
    unknown = [g for g in groups if not isinstance(g, ClusterGroup)]
    if unknown:
        raise ServiceError({"groups": "Give groups, not names."})
    with transaction.atomic():
        before = team_view(team) if team is not None else None
        if team is None:
            team = Team.objects.create(name=name, selector=selector, description=description)
        else:
            team.selector, team.description = selector, description
            team.save(update_fields=["selector", "description", "updated_at"])
        team.groups.set(groups)
        record(user=user, action="team.create" if before is None else "team.update", target=team,
               source_ip=source_ip, before=before, after=team_view(team))
    return team


def delete_team(team: Team, *, user, source_ip: str = "") -> None:
    """Delete a team and its members' roles; refused while an application is owned or approved by it."""
    _check(user)
    before = {**team_view(team), "members": team.members.count()}
    try:
        with transaction.atomic():
            record(user=user, action="team.delete", target=team, source_ip=source_ip, before=before)
            team.delete()
    except ProtectedError as exc:
        names = sorted({str(o) for o in exc.protected_objects})[:5]
        raise ServiceError(f"Team {team.name} owns or approves applications ({', '.join(names)}): give them to "
                           "another team first.", status=409) from None


def add_member(team: Team, *, member, role: str, user, source: str = GrantSource.MANUAL,
               source_ip: str = "") -> TeamMember:
    """Give `member` `role` in `team` (kept if they hold it already)."""
    if source == GrantSource.MANUAL:
        _check(user)
    if role not in TeamRole.values:
        raise ServiceError({"role": f"One of {', '.join(TeamRole.values)}."})
    if not member.is_active:
        raise ServiceError({"user": f"{member.get_username()} is deactivated."})
    with transaction.atomic():
        grant, created = TeamMember.objects.get_or_create(team=team, user=member, role=role,
                                                          defaults={"source": source})
        if created:
            record(user=user, action="team.member_add", target=team, source_ip=source_ip,
                   after={"user": member.get_username(), "role": role, "source": source})
    forget(member)
    return grant


def remove_member(grant: TeamMember, *, user, source_ip: str = "") -> None:
    if grant.source == GrantSource.MANUAL:
        _check(user)
    with transaction.atomic():
        record(user=user, action="team.member_remove", target=grant.team, source_ip=source_ip,
               before={"user": grant.user.get_username(), "role": grant.role, "source": grant.source})
        grant.delete()
    forget(grant.user)
