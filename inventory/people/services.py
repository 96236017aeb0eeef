"""Every change to teams, their members and the sign-on role mapping: platform admins only, audited in the same
transaction, whatever the door (pages, API, the sign-on's login sync calls `sync_sso_roles`)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import ProtectedError

from foundation.audit import record
from foundation.errors import ServiceError
from foundation.roles import ROLES
from inventory import selectors
from inventory.choices import GrantSource, TeamRole
from inventory.models import ClusterGroup, RoleMapping, Team, TeamMember
from inventory.people import accounts
from inventory.people.access import forget, require
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
    """Take a role given in Fleetweb away (admins); a role the sign-on mapping gave goes only at a sign-in that
    no longer brings it (`sync_sso_roles`, user None), since the next sign-in would give it back."""
    if grant.source == GrantSource.MANUAL:
        _check(user)
    elif user is not None:
        _check(user)
        raise ServiceError(f"{grant.user.get_username()}'s {grant.role} role in {grant.team.name} comes from the "
                           "identity provider's groups: change the sign-on mapping or their groups there.",
                           status=409)
    with transaction.atomic():
        record(user=user, action="team.member_remove", target=grant.team, source_ip=source_ip,
               before={"user": grant.user.get_username(), "role": grant.role, "source": grant.source})
        grant.delete()
    forget(grant.user)


# ---------------------------------------------------------------------------------------------
# Single sign-on: the mapping of claim values to roles, and applying it at each sign-in


def mapping_view(mapping: RoleMapping) -> dict:
    return {"claim_value": mapping.claim_value, "team": mapping.team.name if mapping.team else None,
            "role": mapping.role}


def add_mapping(*, claim_value: str, role: str, user, team: Team | None = None, source_ip: str = "") -> RoleMapping:
    """`claim_value` in the groups claim gives `role` in `team` (or globally, with no team)."""
    require(user, "manage_sso", message="The sign-on role mapping is edited by platform admins.")
    claim_value = (claim_value or "").strip()
    if not claim_value or len(claim_value) > 255:
        raise ServiceError({"claim_value": "The group name as the identity provider sends it (1-255 characters)."})
    allowed = TeamRole.values if team is not None else list(ROLES)
    if role not in allowed:
        raise ServiceError({"role": f"One of {', '.join(allowed)}" + (" in a team." if team else " (global).")})
    with transaction.atomic():
        mapping, created = RoleMapping.objects.get_or_create(claim_value=claim_value, team=team, role=role)
        if not created:
            raise ServiceError({"claim_value": "This mapping exists already."}, status=409)
        record(user=user, action="sso.mapping_add", target=mapping, source_ip=source_ip, after=mapping_view(mapping))
    return mapping


def delete_mapping(mapping: RoleMapping, *, user, source_ip: str = "") -> None:
    """Remove a mapping; people lose the role it gave at their next sign-in."""
    require(user, "manage_sso", message="The sign-on role mapping is edited by platform admins.")
    with transaction.atomic():
        record(user=user, action="sso.mapping_delete", target=mapping, source_ip=source_ip,
               before=mapping_view(mapping))
        mapping.delete()


def sync_sso_roles(member, claim_values: list[str]) -> dict:
    """Make `member`'s roles what the mapping gives `claim_values`: global roles exactly (a signed-on account's
    global roles come from the provider), team roles from the provider added and removed (roles given in
    Fleetweb stay). Every grant and removal is on the record. Returns what changed."""
    mappings = list(RoleMapping.objects.filter(claim_value__in=claim_values).select_related("team"))
    want_global = {m.role for m in mappings if m.team_id is None and m.role in ROLES}
    want_team = {(m.team_id, m.role): m.team for m in mappings if m.team is not None}
    have_global = set(member.groups.filter(name__in=ROLES).values_list("name", flat=True))
    accounts.set_global_roles(member, [r for r in ROLES if r in want_global])
    have_team = {(g.team_id, g.role): g for g in TeamMember.objects.filter(user=member, source=GrantSource.SSO)
                 .select_related("team", "user")}
    for team_id, role in sorted(set(want_team) - set(have_team)):
        add_member(want_team[(team_id, role)], member=member, role=role, user=None, source=GrantSource.SSO)
    for key in sorted(set(have_team) - set(want_team)):
        remove_member(have_team[key], user=None)
    forget(member)
    return {"global_added": sorted(want_global - have_global), "global_removed": sorted(have_global - want_global),
            "team_added": sorted(set(want_team) - set(have_team)),
            "team_removed": sorted(set(have_team) - set(want_team))}
