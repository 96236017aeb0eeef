"""Who owns what on a member: namespaces are held by one team or by the platform, and objects belong to the
application that applied them, recorded by the uid the cluster gave them. An application changes only what it owns.

The rules, asked at rollout creation (from the inventory), before every apply (from the database) and while applying
(from the live cluster):
- `kube-*`, Fleetweb's own namespace and FLEETWEB_PLATFORM_NAMESPACES are the platform's.
- A namespace recorded as held (NamespaceHold) is its holder's.
- A namespace that does not exist yet becomes the applying application's team's (or the platform's) when it is
  created; one that exists with no holder recorded is the platform's, except where the same team's applications were
  already deployed there before holds were recorded.
"""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from inventory.access import FLEETWEB_NAMESPACE
from inventory.models import Cluster, Namespace
from rollouts.models import Application, Deployed, ManagedObject, NamespaceHold


def platform_namespace(name: str) -> bool:
    return name.startswith("kube-") or name == FLEETWEB_NAMESPACE or name in settings.FLEETWEB_PLATFORM_NAMESPACES


def holder(team) -> str:
    return f"team {team.name}" if team is not None else "the platform"


def _owner(app: Application) -> str:
    return holder(app.owner_team)


def namespace_refusals(app: Application, clusters: list[Cluster], *,
                       live: dict[int, bool] | None = None) -> dict[int, str]:
    """{cluster pk: why `app` may not deploy into its namespace there} for those of `clusters` where it may not.
    Whether the namespace exists is what `live` says (the cluster's own answer) or else what the last syncs saw;
    three queries for any number of clusters."""
    name = app.namespace
    holds = {h.cluster_id: h for h in NamespaceHold.objects.filter(
        cluster__in=clusters, name=name).select_related("team")}
    unheld = [c.pk for c in clusters if c.pk not in holds]
    existing: set[int] = set()
    if unheld and app.owner_team_id is not None and not platform_namespace(name):
        if live is None:
            existing = set(Namespace.objects.filter(cluster_id__in=unheld, name=name)
                           .values_list("cluster_id", flat=True))
        else:
            existing = {pk for pk in unheld if live.get(pk)}
        # The owner's applications already ran in this namespace there before holds were recorded.
        existing -= set(Deployed.objects.filter(cluster_id__in=existing, application__namespace=name,
                                                application__owner_team_id=app.owner_team_id)
                        .values_list("cluster_id", flat=True))
    refusals = {}
    for cluster in clusters:
        hold = holds.get(cluster.pk)
        if hold is not None:
            if hold.team_id != app.owner_team_id:
                refusals[cluster.pk] = (f"namespace {name} on {cluster.name} is held by {holder(hold.team)}, "
                                        f"not by {_owner(app)}")
        elif platform_namespace(name) and app.owner_team_id is not None:
            refusals[cluster.pk] = f"namespace {name} on {cluster.name} is held by the platform, not by {_owner(app)}"
        elif cluster.pk in existing:
            refusals[cluster.pk] = (f"namespace {name} on {cluster.name} exists and is held by the platform (no "
                                    f"team's application created it), not by {_owner(app)}")
    return refusals


def namespace_refusal(app: Application, cluster: Cluster, *, exists: bool | None = None) -> str:
    """`namespace_refusals` for one cluster; `exists`: what the cluster just said (None: as the last sync saw it)."""
    live = None if exists is None else {cluster.pk: exists}
    return namespace_refusals(app, [cluster], live=live).get(cluster.pk, "")


def claim_namespace(app: Application, cluster: Cluster) -> str:
    """Record that the application's owner holds its namespace on `cluster` (before its first apply there); the
    refusal when someone else got there first."""
    try:
        with transaction.atomic():
            hold, _created = NamespaceHold.objects.get_or_create(
                cluster=cluster, name=app.namespace, defaults={"team": app.owner_team, "at": timezone.now()})
    except IntegrityError:  # another apply claimed it in the same instant
        hold = NamespaceHold.objects.select_related("team").get(cluster=cluster, name=app.namespace)
    if hold.team_id != app.owner_team_id:
        return f"namespace {app.namespace} on {cluster.name} is held by {holder(hold.team)}, not by {_owner(app)}"
    return ""


def owner_of(cluster: Cluster, uid: str) -> str | None:
    """The name of the application Fleetweb applied this object for (None: no record of it)."""
    if not uid:
        return None
    return (ManagedObject.objects.filter(cluster=cluster, uid=uid)
            .values_list("application__name", flat=True).first())


def record_applied(app: Application, cluster: Cluster, applied: dict) -> None:
    """Remember the object the cluster answered an apply with, by its uid."""
    meta = applied.get("metadata") or {}
    uid = str(meta.get("uid") or "")
    if not uid:
        return
    ManagedObject.objects.update_or_create(cluster=cluster, uid=uid, defaults={
        "application": app, "kind": str(applied.get("kind", ""))[:63], "namespace": str(meta.get("namespace", ""))[:63],
        "name": str(meta.get("name", ""))[:253], "applied_at": timezone.now()})


def forget(cluster: Cluster, uid: str) -> None:
    ManagedObject.objects.filter(cluster=cluster, uid=uid).delete()


def holders_of(cluster: Cluster, names: list[str]) -> dict[str, str]:
    """Who holds each of these namespaces on `cluster`, as the rules above decide it (two queries): a recorded hold,
    the platform's own, a team whose applications ran there before holds were kept, else the platform."""
    holds = {h.name: holder(h.team) for h in NamespaceHold.objects.filter(cluster=cluster, name__in=names)
             .select_related("team")}
    ran: dict[str, str] = {}
    for name, team in (Deployed.objects.filter(cluster=cluster, application__namespace__in=names)
                       .exclude(application__owner_team=None)
                       .values_list("application__namespace", "application__owner_team__name")):
        ran.setdefault(name, f"team {team}")
    return {name: holds.get(name) or ("the platform" if platform_namespace(name) else ran.get(name, "the platform"))
            for name in names}
