"""Who may see and change which part of the fleet: global roles, team roles and team scopes, and the one
permission check `can(user, action, obj)` every door asks.

A global role covers the whole fleet: global `viewer` (auditors) reads everything, global `operator` and
`approver` are the platform team's, `admin` is the platform admin. A team role covers the team's scope: a team
`viewer` reads its clusters and applications, a team `operator` also syncs its clusters and creates, changes
and rolls out the team's applications to clusters in the scope, a team `approver` approves the production
stages of the applications the team approves. Attaching and detaching clusters, groups, teams, policies and
the sign-on mapping stay with global roles.

`Access` is computed once per request (cached on the user object) in a constant number of queries however many
teams or clusters there are: memberships, their teams and groups, and the clusters in the union of the scopes
with one column per team saying whether it is in that team's scope.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import cached_property

from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet

from foundation.errors import ServiceError
from foundation.roles import ADMIN, APPROVER, OPERATOR, VIEWER, implied, roles_of
from inventory.models import Cluster, ClusterGroup, Team, TeamMember, member_counts


@dataclasses.dataclass
class Access:
    """A user's global roles, team roles and (lazily) the clusters, groups and teams within reach."""

    user: object
    global_roles: frozenset[str]
    team_roles: dict[int, frozenset[str]]  # team id -> roles held there (implied roles included)

    @property
    def sees_all(self) -> bool:
        """A global role: every row is visible."""
        return VIEWER in self.global_roles

    @cached_property
    def roles_anywhere(self) -> frozenset[str]:
        roles = set(self.global_roles)
        for held in self.team_roles.values():
            roles |= held
        return frozenset(roles)

    @property
    def team_ids(self) -> frozenset[int]:
        return frozenset(self.team_roles)

    def teams_with(self, role: str) -> frozenset[int]:
        return frozenset(team for team, held in self.team_roles.items() if role in held)

    @cached_property
    def teams(self) -> list[Team]:
        """The user's teams, their groups loaded (2 queries; none without teams)."""
        if not self.team_roles:
            return []
        return list(Team.objects.filter(pk__in=self.team_roles).prefetch_related("groups"))

    @cached_property
    def scope_conditions(self) -> dict[int, Q]:
        """Team id -> its scope as one condition on clusters (no query beyond `teams`)."""
        return conditions_of(self.teams)

    @cached_property
    def team_clusters(self) -> dict[int, frozenset[int]]:
        """Team id -> ids of the clusters in its scope (one query more than `scope_conditions`)."""
        return scopes_from(self.scope_conditions)

    @cached_property
    def cluster_ids(self) -> frozenset[int]:
        """Clusters in any of the user's teams' scopes (meaningful only when not `sees_all`), for checks in Python;
        queries filter by `cluster_query`."""
        return frozenset().union(*self.team_clusters.values()) if self.team_clusters else frozenset()

    @cached_property
    def cluster_condition(self) -> Q:
        """The clusters in any of the user's teams' scopes as one condition on the cluster table itself (no joins,
        so no duplicate rows): what a query over clusters filters by. Asked as a condition rather than as
        `pk IN (cluster_query)`, PostgreSQL reads only the scope's rows through the selector fields' indexes, where
        the subquery made it join the scope against a scan of the whole table. No query beyond `scope_conditions`."""
        union = Q(pk__in=[])
        for condition in self.scope_conditions.values():
            union |= condition
        return union

    @cached_property
    def cluster_query(self) -> QuerySet:
        """The clusters in any of the user's teams' scopes as a subquery (`pk`) the database decides within each
        query that filters by it and can join, whatever the scope's size: never a list of ids in the SQL. For rows
        that hang off a cluster; a query over clusters filters by `cluster_condition`."""
        return Cluster.objects.filter(self.cluster_condition).order_by().values("pk")

    def clusters_for(self, role: str) -> frozenset[int] | None:
        """Clusters the user holds `role` over; None for all of them (a global role)."""
        if role in self.global_roles:
            return None
        teams = self.teams_with(role)
        return frozenset().union(*(self.team_clusters.get(t, frozenset()) for t in teams)) if teams else frozenset()

    @cached_property
    def group_member_counts(self) -> dict[int, int]:
        """Group id -> how many of its members are in the user's teams' scopes, for every group (meaningful only
        when not `sees_all`): one aggregate over the scope, shared by `group_ids` and the group pages' counts."""
        return member_counts(ClusterGroup.objects.only("pk", "selector"),
                             Cluster.objects.filter(self.cluster_condition))

    @cached_property
    def group_ids(self) -> frozenset[int]:
        """Groups the user sees: those of their teams' scopes and any group with a cluster in reach, decided by the
        database over the scope (2 queries once the scope is known, whatever its size)."""
        if not self.team_roles:
            return frozenset()
        named = {group.pk for team in self.teams for group in team.groups.all()}
        return frozenset(named | {pk for pk, n in self.group_member_counts.items() if n})


def conditions_of(teams) -> dict[int, Q]:
    """Team id -> its scope as one condition on clusters, for any number of teams: a queryset in two queries (the
    teams, their groups), or teams whose groups are loaded already in none."""
    if isinstance(teams, QuerySet):
        teams = teams.prefetch_related("groups")
    return {team.pk: team.scope_q(list(team.groups.all())) for team in teams}


def scopes_of(teams) -> dict[int, frozenset[int]]:
    """Team id -> ids of the clusters in its scope, for any number of teams in three queries: the teams, their
    groups, and the clusters in the union with one true/false column per team, all decided by the database."""
    return scopes_from(conditions_of(teams))


def scopes_from(conditions: dict[int, Q]) -> dict[int, frozenset[int]]:
    """`scopes_of` from the teams' conditions: one query."""
    if not conditions:
        return {}
    union = Q(pk__in=[])
    for condition in conditions.values():
        union |= condition
    matched = Cluster.objects.filter(union).order_by()
    if len(conditions) == 1:
        [team_id] = conditions
        return {team_id: frozenset(matched.values_list("pk", flat=True))}
    flags = {f"in_{pk}": ExpressionWrapper(condition, output_field=BooleanField())
             for pk, condition in conditions.items()}
    scopes: dict[int, set[int]] = {pk: set() for pk in conditions}
    for row in matched.annotate(**flags).values_list("pk", *flags):
        for pk, inside in zip(conditions, row[1:], strict=True):
            if inside:
                scopes[pk].add(row[0])
    return {pk: frozenset(ids) for pk, ids in scopes.items()}


def access_of(user) -> Access:
    """The user's access, cached on the user object for the request (one query for team roles)."""
    cached = getattr(user, "_fleetweb_access", None)
    if cached is not None:
        return cached
    global_roles = frozenset(roles_of(user))
    team_roles: dict[int, set[str]] = {}
    if user.is_authenticated and user.is_active:
        for team_id, role in TeamMember.objects.filter(user=user).values_list("team_id", "role"):
            team_roles.setdefault(team_id, set()).update(implied(role))
    access = Access(user, global_roles, {t: frozenset(r) for t, r in team_roles.items()})
    if user.is_authenticated:
        user._fleetweb_access = access
    return access


def cluster_scope(user) -> frozenset[int] | None:
    """Ids of the clusters the user sees; None for all of them (a global role). For checks in Python; a query
    filters by `scope_query`."""
    access = access_of(user)
    if access.sees_all:
        return None
    return access.cluster_ids if access.roles_anywhere else frozenset()


def scope_query(user) -> QuerySet | None:
    """The clusters the user sees as a subquery (`pk`) to filter by (`cluster_id__in=`), decided by the database
    within that query; None for all of them (a global role)."""
    access = access_of(user)
    if access.sees_all:
        return None
    return access.cluster_query if access.roles_anywhere else Cluster.objects.none().values("pk")


def narrowed_scope(user, team_name: str = "") -> frozenset[int] | None:
    """The user's clusters, narrowed to one team's scope by the team switcher (`?team=`); None: all of them.
    A team the user may not see narrows to nothing."""
    scope = cluster_scope(user)
    if not team_name:
        return scope
    team = Team.objects.visible_to(user).filter(name=team_name).first()
    if team is None:
        return frozenset()
    clusters = team_scope(team.pk)
    return clusters if scope is None else clusters & scope


def forget(user) -> None:
    """Drop the cached access (after the user's roles changed within the request)."""
    for attr in ("_fleetweb_access", "_fleetweb_roles"):
        if hasattr(user, attr):
            delattr(user, attr)


def team_roles_anywhere(user) -> set[str]:
    """For foundation.roles: the roles the user holds in any team."""
    access = access_of(user)
    return set(access.roles_anywhere - access.global_roles)


# ---------------------------------------------------------------------------------------------
# The permission check.

_RULES: dict[str, Callable[[Access, object], bool]] = {}


def rule(action: str) -> Callable:
    """Register the rule for one action: fn(access, obj) -> bool."""
    def decorator(fn):
        _RULES[action] = fn
        return fn
    return decorator


def can(user, action: str, obj=None) -> bool:
    """The one permission check: may `user` do `action` on `obj`? Unknown actions are refused."""
    fn = _RULES.get(action)
    if fn is None or user is None or not getattr(user, "is_authenticated", False):
        return False
    return fn(access_of(user), obj)


def require(user, action: str, obj=None, *, message: str) -> None:
    """`can`, or a 403 ServiceError saying `message`. System callers (user None) pass."""
    if user is not None and not can(user, action, obj):
        raise ServiceError(message, status=403)


def in_reach(access: Access, role: str, cluster_id: int) -> bool:
    clusters = access.clusters_for(role)
    return clusters is None or cluster_id in clusters


def _platform(role: str) -> Callable[[Access, object], bool]:
    return lambda access, obj: role in access.global_roles


for _action in ("attach", "detach", "edit_cluster", "edit_group", "edit_policy", "edit_plan", "choose_approvers"):
    rule(_action)(_platform(OPERATOR))
# run_exec_plugin: any door that could have a worker run a kubeconfig's exec plugin (attach, credential update,
# connection test, an attach draft) acts with Fleetweb's own host identity, so it is the platform admins' alone.
# hold_namespace: who holds a namespace on a member decides which team's applications may deploy into it.
# manage_people: create, invite, change, deactivate accounts, give global roles, issue set-password links.
# register_cluster: hand out bootstrap tokens, accept or reject what agents present, revoke an agent's credential.
# override_window: start a stage a change window holds, in an emergency (audited, announced).
for _action in ("manage_people", "manage_teams", "manage_sso", "run_exec_plugin", "hold_namespace",
                "register_cluster", "override_window"):
    rule(_action)(_platform(ADMIN))


@rule("manage_notifications")
def _manage_notifications(access: Access, team) -> bool:
    """Channels and alert rules: a team's by its operators (and admins); the platform's (no team) by admins."""
    if ADMIN in access.global_roles:
        return True
    return team is not None and team.pk in access.teams_with(OPERATOR)


@rule("sync")
@rule("mark_busy")  # mark a cluster busy (an incident: Fleetweb changes nothing there) or clear it
def _sync(access: Access, cluster) -> bool:
    return in_reach(access, OPERATOR, cluster.pk)


@rule("manage_windows")
def _manage_windows(access: Access, team) -> bool:
    """Change windows and freezes: a team's by its operators (they hold only that team's clusters) and admins; the
    platform's (no team) by admins alone."""
    if ADMIN in access.global_roles:
        return True
    return team is not None and team.pk in access.teams_with(OPERATOR)


@rule("create_application")
@rule("manage_source_credential")  # store credentials for application sources owned by `team`
def _create_application(access: Access, team) -> bool:
    """In `team` (None: a platform application, or the platform's source credentials: global operators only)."""
    if OPERATOR in access.global_roles:
        return True
    return team is not None and team.pk in access.teams_with(OPERATOR)


@rule("change_application")
def _change_application(access: Access, app) -> bool:
    """Edit, add revisions, set overrides, roll out, pause, roll back: the owner team's operators."""
    if OPERATOR in access.global_roles:
        return True
    return app.owner_team_id is not None and app.owner_team_id in access.teams_with(OPERATOR)


@rule("use_source_credential")
def _use_source_credential(access: Access, credential) -> bool:
    """Point an application's source at these credentials: its team's operators (the platform's: global
    operators)."""
    if OPERATOR in access.global_roles:
        return True
    return credential.owner_team_id is not None and credential.owner_team_id in access.teams_with(OPERATOR)


@rule("approve")
def _approve(access: Access, app) -> bool:
    """Approve or reject an application's production stage: its approver team's approvers (the owner team's
    by default); an application of no team: global approvers."""
    team = app.approving_team_id
    if team is None:
        return APPROVER in access.global_roles
    return team in access.teams_with(APPROVER)


def team_scope(team_id: int) -> frozenset[int]:
    return scopes_of(Team.objects.filter(pk=team_id)).get(team_id, frozenset())


def deploy_refusal(user, app, clusters, *, owner_scope: frozenset[int] | None = None) -> str:
    """Why `clusters` may not receive `app` from `user` ("" when they may): each must be in the owner team's
    scope (for a team's application, whoever starts it) and within the user's operator reach. Clusters the
    user can see are named; the others are counted, so a refusal does not reveal what lies outside one's scope.
    `owner_scope`: the owner team's `team_scope`, when the caller asks for many stages of one rollout."""
    outside = []
    if app.owner_team_id is not None:
        scope = team_scope(app.owner_team_id) if owner_scope is None else owner_scope
        outside = [c for c in clusters if c.pk not in scope]
        why = f"outside the scope of team {app.owner_team.name}"
    if not outside and user is not None:
        reach = access_of(user).clusters_for(OPERATOR)
        outside = [] if reach is None else [c for c in clusters if c.pk not in reach]
        why = "outside the clusters you operate"
    if not outside:
        return ""
    access = access_of(user) if user is not None else None
    shown = [c.name for c in outside if access is None or access.sees_all or c.pk in access.cluster_ids]
    hidden = len(outside) - len(shown)
    parts = ([("cluster " if len(shown) == 1 else "clusters ") + ", ".join(shown[:10])] if shown else []) + (
        [f"{hidden} cluster(s) you cannot see"] if hidden else [])
    return f"{' and '.join(parts)} {'is' if len(outside) == 1 else 'are'} {why}"
