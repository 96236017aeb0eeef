"""Every side effect of the inventory app: attach, update, detach, sync. Pages, API and tasks call these."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from foundation import outbound
from foundation.audit import record
from foundation.errors import ServiceError
from foundation.queueing import enqueue
from foundation.roles import ADMIN, has_role
from inventory import history, kubeconfigs, port, selectors, sync
from inventory.choices import AuthMethod, ClusterEventKind, Environment
from inventory.credentials import expiry_of
from inventory.models import (
    Cluster,
    ClusterCredential,
    ClusterGroup,
    Namespace,
)
from inventory.people.access import can, require
from inventory.signals import clusters_changed, membership_guards
from inventory.validators import validate_minor_version

log = logging.getLogger(__name__)

METADATA_FIELDS = ("environment", "region", "owner", "cost_center", "labels", "sync_interval")


class AttachError(ServiceError):
    """An attach or update Fleetweb refuses; `field` names the input at fault; `status` 400 (bad input) or 403
    (not yours to do)."""

    def __init__(self, message: str, *, field: str = "__all__", status: int = 400):
        super().__init__(message, field=field, status=status)


@contextmanager
def guarded(cluster_ids, *, user) -> Iterator[None]:
    """Around a change (inside its transaction): every registered guard compares before and after, and a refusal
    undoes the change by raising AttachError (403) out of the transaction."""
    ids = sorted(set(cluster_ids))
    states = [(guard, guard.snapshot(ids)) for guard in membership_guards]
    yield
    for guard, state in states:
        refusal = guard.refusal(state, ids, user)
        if refusal:
            raise AttachError(refusal, status=403)


def _is_admin(user) -> bool:
    """None is the system itself (commands, tasks run by an admin's hand), which may."""
    return user is None or has_role(user, ADMIN)


def _check_insecure(*, insecure: bool, environment: str, user) -> None:
    if not insecure:
        return
    if environment == Environment.PROD:
        raise AttachError("Skipping TLS verification is never allowed for prod clusters.",
                          field="insecure_skip_tls_verify")
    if not _is_admin(user):
        raise AttachError("Only admins may skip TLS verification.", field="insecure_skip_tls_verify")


def _check_credentials(credentials: dict, *, environment: str, user) -> None:
    """What an operator may not hand Fleetweb: plain-http servers (never for prod) and exec plugins."""
    server = port.server_of(credentials)
    if server.lower().startswith("http://"):
        if environment == Environment.PROD:
            raise AttachError("Plain http:// API servers are never allowed for prod clusters: the token would travel "
                              "in clear. Use https://.", field="server")
        if not _is_admin(user):
            raise AttachError("Only admins may attach a plain http:// API server (the token travels in clear).",
                              field="server", status=403)
    try:
        outbound.check_and_resolve(server, schemes=("https", "http"), what="API server URL")
    except outbound.OutboundRefused as exc:
        if exc.kind != "dns":  # a name not yet published is fine: every connection checks again
            raise AttachError(str(exc), field="server") from None
    if port.uses_exec(credentials) and user is not None and not can(user, "run_exec_plugin"):
        raise AttachError("Only admins may attach a kubeconfig that runs an exec plugin (it runs a program on "
                          "Fleetweb's workers with Fleetweb's own cloud identity).", status=403)


def attach_cluster(*, name: str, credentials: dict, user, environment: str = Environment.DEV, region: str = "",
                   owner: str = "", cost_center: str = "", labels: dict | None = None, insecure: bool = False,
                   sync_interval: int | None = None, source_ip: str = "") -> Cluster:
    """Store a cluster and its encrypted credentials, then queue its first sync."""
    require(user, "attach", message="Attaching clusters needs the global operator role.")
    _check_insecure(insecure=insecure, environment=environment, user=user)
    _check_credentials(credentials, environment=environment, user=user)
    taken = cluster_name_taken(name)
    if taken:
        raise AttachError(taken, field="name")
    with transaction.atomic():
        now = timezone.now()
        cluster = Cluster.objects.create(
            name=name, environment=environment, region=region, owner=owner, cost_center=cost_center,
            labels=labels or {}, server=port.server_of(credentials), auth_method=credentials["method"],
            insecure_skip_tls_verify=insecure, sync_interval=sync_interval or settings.FLEETWEB_SYNC_INTERVAL,
            next_sync_at=now, sync_queued_at=now, created_by=user if getattr(user, "pk", None) else None,
            credentials_expire_at=expiry_of(credentials),
        )
        ClusterCredential.objects.create(cluster=cluster, ciphertext=ClusterCredential.seal(credentials))
        record(user=user, action="cluster.attach", target=cluster, source_ip=source_ip,
               after=cluster_audit_view(cluster))
        history.record(history.event(cluster.pk, ClusterEventKind.ATTACHED,
                                     f"attached ({credentials_summary(cluster)})", actor=_actor(user)))
        # Its groups' policies are evaluated (and enforced) after that sync, like after every sync. Queued here (with
        # those of clusters attached meanwhile), beat does not queue a second one meanwhile.
        transaction.on_commit(lambda: sync.first_sync(cluster.pk))
    return cluster


def add_registered_cluster(*, name: str, environment: str, server: str, user, source_ip: str = "",
                           kubernetes_version: str = "") -> Cluster:
    """Store a cluster reached through its agent (no credentials here: the agent holds its own), inside the caller's
    transaction (`agents.services.decide`, which checked the permission), with the version its agent reported (the
    first full sync reads it again). Its first inventory comes from the agent's first report of every kind, which
    its first heartbeat's answer asks for (`agents.services.heartbeat`): before that, no call could reach it."""
    require(user, "register_cluster", message="Accepting a registered cluster needs the global admin role.")
    taken = cluster_name_taken(name)
    if taken:
        raise AttachError(taken, field="name", status=409)
    cluster = Cluster.objects.create(
        name=name, environment=environment, server=server, auth_method=AuthMethod.AGENT,
        kubernetes_version=kubernetes_version[:64], sync_interval=settings.FLEETWEB_AGENT_RESYNC,
        next_sync_at=timezone.now() + timedelta(seconds=settings.FLEETWEB_SYNC_INTERVAL),
        created_by=user if getattr(user, "pk", None) else None)
    record(user=user, action="cluster.attach", target=cluster, source_ip=source_ip, after=cluster_audit_view(cluster))
    history.record(history.event(cluster.pk, ClusterEventKind.ATTACHED, "registered through its agent",
                                 actor=_actor(user)))
    return cluster


def _actor(user) -> str:
    return user.get_username() if getattr(user, "pk", None) else ""


def credentials_summary(cluster: Cluster) -> str:
    """What the History says of credentials: the method and, where known, the expiry. Never the secret."""
    text = f"{cluster.get_auth_method_display()} to {cluster.server}"
    if cluster.credentials_expire_at:
        text += f", expires {cluster.credentials_expire_at:%Y-%m-%d %H:%M} UTC"
    return text


def cluster_name_taken(name: str) -> str:
    """Why `name` cannot be a new cluster's name, or '' (the one check pages, API and services share)."""
    return f"A cluster named '{name}' is already attached." if Cluster.objects.filter(name=name).exists() else ""


def group_name_taken(name: str) -> str:
    return f"A group named '{name}' already exists." if ClusterGroup.objects.filter(name=name).exists() else ""


def _server_key(server: str) -> str:
    """An API server URL as compared for "already attached": scheme, host (lowercase) and port (443 by default)."""
    parts = urlsplit((server or "").strip())
    try:
        port_number = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return server.strip().lower()
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port_number}{parts.path.rstrip('/')}"


def already_attached(targets: list[tuple[str, dict]]) -> dict[str, str]:
    """{target: name of the cluster already attached at the same API server} for the targets that are."""
    wanted = {}
    for context, credentials in targets:
        server = port.server_of(credentials)
        if server:
            wanted[_server_key(server)] = context or server
    if not wanted:
        return {}
    hosts = Q()
    for key in wanted:  # the candidates by host name, in the database (not every cluster of the fleet)
        hosts |= Q(server__icontains=urlsplit(key).hostname or key)
    found = {}
    for name, server in Cluster.objects.filter(hosts).values_list("name", "server").order_by("name"):
        key = _server_key(server)
        if key in wanted and wanted[key] not in found:
            found[wanted[key]] = name
    return found


def attached_by_uid(uids: list[str]) -> dict[str, str]:
    """{kube-system uid: name of the attached cluster whose inventory has that namespace} for the uids given: the
    same cluster reached by another URL (a load balancer, another DNS name)."""
    wanted = [u for u in uids if u]
    if not wanted:
        return {}
    return dict(Namespace.objects.filter(name="kube-system", uid__in=wanted).order_by("cluster__name")
                .values_list("uid", "cluster__name"))


def names_problem(names: list[str]) -> str:
    """Why these names cannot all be new clusters' names, or ''."""
    clashes = sorted(set(Cluster.objects.filter(name__in=names).values_list("name", flat=True)))
    if clashes or len(set(names)) != len(names):
        return (f"These names are taken or repeated: {', '.join(clashes or names)}. Attach one context at a time "
                "with its own name.")
    return ""


def attach_many(named: list[tuple[str, dict]], *, user, allow_same_server: bool = True, kube_system_uids=(),
                **metadata) -> list[Cluster]:
    """Attach several clusters (the contexts of one kubeconfig) with the same metadata, all or none: a clash on the
    second name must not leave the first half-done. Without `allow_same_server` (the page, until "Attach anyway" is
    ticked) an API server already attached is refused, naming its cluster."""
    names = [name for name, _credentials in named]
    if problem := names_problem(names):
        raise AttachError(problem, field="name")
    twins = {} if allow_same_server else already_attached([(name, c) for name, c in named])
    same = {} if allow_same_server else attached_by_uid(list(kube_system_uids))
    if twins or same:
        said = [f"{target} has the API server of cluster {existing}" for target, existing in twins.items()]
        said += [f"the tested credentials reach cluster {existing} (its kube-system namespace)"
                 for existing in same.values() if existing not in twins.values()]
        raise AttachError("Already attached: " + "; ".join(said) + ". Tick 'Attach anyway' to attach it a second "
                          "time.", field="attach_anyway")
    with transaction.atomic():
        return [attach_cluster(name=name, credentials=credentials, user=user, **metadata)
                for name, credentials in named]


def attach_kubeconfig_file(path, *, user=None) -> list[tuple[str, str]]:
    """Attach every context of a kubeconfig on this machine (`make run KUBECONFIG=…`).

    Files it references are read relative to it and stored inline. Returns (context, outcome)
    for each context: attached as NAME, already attached, or why not; one bad context never
    stops the others. An unreadable or invalid file raises KubeconfigError.
    """
    from pathlib import Path


    path = Path(path).expanduser()
    try:
        data = kubeconfigs.parse_kubeconfig(path.read_bytes())
    except OSError as exc:
        raise kubeconfigs.KubeconfigError(f"cannot read {path}: {exc.strerror}") from None
    results = []
    for context in kubeconfigs.context_names(data):
        name = kubeconfigs.default_name(context)
        if Cluster.objects.filter(name=name).exists():
            results.append((context, f"already attached as {name}"))
            continue
        try:
            single = kubeconfigs.extract_context(data, context, base_dir=path.parent)
            attach_cluster(name=name, credentials=kubeconfigs.credentials_from_kubeconfig(single), user=user)
        except (kubeconfigs.KubeconfigError, AttachError) as exc:
            results.append((context, f"not attached: {exc}"))
            continue
        results.append((context, f"attached as {name}"))
    return results


def cluster_audit_view(cluster: Cluster) -> dict:
    """The cluster fields the audit log keeps (never credentials)."""
    return {"name": cluster.name, "server": cluster.server, "auth_method": cluster.auth_method,
            "insecure_skip_tls_verify": cluster.insecure_skip_tls_verify,
            **{f: getattr(cluster, f) for f in METADATA_FIELDS}}


def update_cluster(cluster: Cluster, *, user, source_ip: str = "", credentials: dict | None = None,
                   insecure: bool | None = None, **changes) -> Cluster:
    """Change metadata, labels, interval or credentials of a cluster; audited with before/after."""
    require(user, "edit_cluster", cluster, message="Changing a cluster needs the global operator role.")
    unknown = set(changes) - set(METADATA_FIELDS)
    if unknown:
        raise AttachError(f"These fields cannot be changed: {', '.join(sorted(unknown))}")
    before = cluster_audit_view(cluster)
    environment = changes.get("environment", cluster.environment)
    new_insecure = cluster.insecure_skip_tls_verify if insecure is None else insecure
    if new_insecure and (insecure or environment != cluster.environment):
        _check_insecure(insecure=new_insecure, environment=environment, user=user)
    if credentials is not None:
        _check_credentials(credentials, environment=environment, user=user)
    elif environment == Environment.PROD and cluster.server.lower().startswith("http://"):
        raise AttachError(f"{cluster.name} uses a plain http:// API server, which is never allowed for prod clusters.",
                          field="environment")
    if cluster.environment == Environment.PROD and environment != Environment.PROD and not _is_admin(user):
        # Otherwise: relabel to dev, start a rollout needing no approval, relabel back.
        raise AttachError(f"Only admins may move {cluster.name} out of prod: production approvals and rules follow "
                          f"the environment.", field="environment", status=403)
    with transaction.atomic(), guarded([cluster.pk], user=user):
        for field, value in changes.items():
            setattr(cluster, field, value)
        cluster.insecure_skip_tls_verify = new_insecure
        if credentials is not None:
            cluster.server = port.server_of(credentials)
            cluster.auth_method = credentials["method"]
            ClusterCredential.objects.update_or_create(
                cluster=cluster, defaults={"ciphertext": ClusterCredential.seal(credentials)})
            cluster.credentials_expire_at = expiry_of(credentials)
            cluster.next_sync_at = timezone.now()
        cluster.save()
        after = cluster_audit_view(cluster)
        if credentials is not None:
            after["credentials"] = "replaced"
        record(user=user, action="cluster.update", target=cluster, source_ip=source_ip, before=before, after=after)
        events = []
        if credentials is not None:
            events.append(history.event(cluster.pk, ClusterEventKind.CREDENTIALS,
                                        f"credentials replaced ({credentials_summary(cluster)})", actor=_actor(user)))
        changed = sorted(f for f in METADATA_FIELDS if before[f] != after[f])
        if changed or before["insecure_skip_tls_verify"] != after["insecure_skip_tls_verify"]:
            fields = changed + (["insecure_skip_tls_verify"] if before["insecure_skip_tls_verify"] !=
                                after["insecure_skip_tls_verify"] else [])
            events.append(history.event(
                cluster.pk, ClusterEventKind.METADATA, f"changed {', '.join(fields)}", actor=_actor(user),
                before={f: before[f] for f in fields}, after={f: after[f] for f in fields}))
        history.record(*events)
        if any(before[f] != after[f] for f in ("environment", "region", "owner", "cost_center", "labels")):
            clusters_changed.send(sender=Cluster, cluster_ids=[cluster.pk], reason="update")
    return cluster


def detach_cluster(cluster: Cluster, *, user, source_ip: str = "") -> None:
    """Remove a cluster with its credentials, inventory and sync history; audited."""
    require(user, "detach", cluster, message="Detaching clusters needs the global operator role.")
    with transaction.atomic():
        # Lock first: an evaluation or enforcement writing rows for it finishes before they are collected.
        list(Cluster.objects.select_for_update().filter(pk=cluster.pk).values_list("pk"))
        record(user=user, action="cluster.detach", target=cluster, source_ip=source_ip,
               before=cluster_audit_view(cluster))
        cluster.delete()


def sync_now(cluster: Cluster, *, user, via: str) -> None:
    """'Sync now' from a page or the API: global operators and the operators of a team whose scope holds it."""
    require(user, "sync", cluster, message=f"Syncing {cluster.name} needs the operator role over it.")
    request_sync(cluster.pk, triggered_by=f"{via}:{user.get_username()}")


def set_busy(cluster: Cluster, *, user, reason: str = "", busy: bool = True, source_ip: str = "") -> Cluster:
    """Mark a cluster busy (an incident: Fleetweb changes nothing there, neither rollouts nor Re-apply, drift
    correction or admission policies, until it is cleared) or clear it: global operators and the operators of a team
    whose scope holds it. Audited."""
    require(user, "mark_busy", cluster, message=f"Marking {cluster.name} busy needs the operator role over it.")
    reason = (reason or "").strip()
    if busy and (not reason or len(reason) > 500):
        raise AttachError("Say why the cluster is busy, in 1 to 500 characters: whoever waits for it reads this.",
                          field="reason")
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
        before = {"busy": cluster.busy_since is not None, "reason": cluster.busy_reason}
        if busy:
            cluster.busy_since = cluster.busy_since or timezone.now()
            cluster.busy_reason = reason
            cluster.busy_by = user if getattr(user, "pk", None) else None
        elif cluster.busy_since is None:
            return cluster
        else:
            cluster.busy_since, cluster.busy_reason, cluster.busy_by = None, "", None
        cluster.save(update_fields=["busy_since", "busy_reason", "busy_by", "updated_at"])
        record(user=user, action="cluster.busy" if busy else "cluster.busy_cleared", target=cluster,
               source_ip=source_ip, before=before, after={"busy": busy, "reason": cluster.busy_reason})
    return cluster


SYNC_AFTER_CHANGE = sync.SYNC_AFTER_CHANGE  # a sync of what the cluster's agent reported changed


def request_sync(cluster_id: int, *, triggered_by: str = "manual") -> None:
    """Queue a sync of one cluster now (the task itself refuses to run twice at once)."""
    # A lost message is no lost sync: the cluster stays due and beat claims it.
    enqueue("inventory.tasks.sync_cluster", cluster_id, triggered_by=triggered_by, what=f"sync of cluster {cluster_id}")


# ---------------------------------------------------------------------------------------------
# Groups


class _Member:
    """Just what selectors read, for counting members of many groups over a whole fleet cheaply."""

    __slots__ = ("pk", "labels", *selectors.FIELDS)

    def __init__(self, pk, labels, *fields):
        self.pk, self.labels = pk, labels
        for name, value in zip(selectors.FIELDS, fields, strict=True):
            setattr(self, name, value)


def membership(groups, clusters=None, *, light: bool = False) -> dict[int, list]:
    """{group id: member clusters} for many groups in three queries, matching selectors in Python.

    `light=True` returns bare rows (pk, labels and the selector fields), several times cheaper to load
    for a thousand clusters when only counts or ids are needed."""
    groups = list(groups)
    if clusters is None and light:
        clusters = [_Member(*row) for row in Cluster.objects.order_by().values_list("pk", "labels",
                                                                                    *selectors.FIELDS)]
    elif clusters is None:
        clusters = list(Cluster.objects.only("pk", "name", "labels", *selectors.FIELDS, "status"))
    static: dict[int, set[int]] = {g.pk: set() for g in groups}
    for group_id, cluster_id in ClusterGroup.static_members.through.objects.filter(
            clustergroup_id__in=static).values_list("clustergroup_id", "cluster_id"):
        static[group_id].add(cluster_id)
    return {g.pk: [c for c in clusters if g.contains(c, static_ids=static[g.pk])] for g in groups}


def groups_of(cluster: Cluster) -> list[ClusterGroup]:
    """The groups a cluster belongs to now (static or by selector)."""
    groups = list(ClusterGroup.objects.all())
    members = membership(groups, [cluster])
    return [g for g in groups if members[g.pk]]


def group_audit_view(group: ClusterGroup, static_names: list[str] | None = None) -> dict:
    if static_names is None:
        static_names = sorted(group.static_members.values_list("name", flat=True)) if group.pk else []
    return {"name": group.name, "description": group.description, "owner": group.owner,
            "selector": group.selector, "upgrade_target": group.upgrade_target, "static_members": static_names}


def _member_ids(group: ClusterGroup) -> set[int]:
    return set(group.members().values_list("pk", flat=True))


def _check_upgrade_target(value: str) -> str:
    value = (value or "").strip().removeprefix("v")
    try:
        validate_minor_version(value)
    except ValidationError as exc:
        raise AttachError(exc.messages[0], field="upgrade_target") from None
    return value


def create_group(*, name: str, user, selector: str = "", description: str = "", owner: str = "",
                 static_members=(), source_ip: str = "", upgrade_target: str = "") -> ClusterGroup:
    """Create a group; its members are re-evaluated against the policies assigned to it."""
    require(user, "edit_group", message="Creating groups needs the global operator role.")
    selectors.parse(selector)  # raises SelectorError with the position
    upgrade_target = _check_upgrade_target(upgrade_target)
    taken = group_name_taken(name)
    if taken:
        raise AttachError(taken, field="name")
    with transaction.atomic():
        group = ClusterGroup.objects.create(name=name, selector=selector.strip(), description=description,
                                            owner=owner, upgrade_target=upgrade_target,
                                            created_by=user if getattr(user, "pk", None) else None)
        group.static_members.set(static_members)
        record(user=user, action="group.create", target=group, source_ip=source_ip,
               after=group_audit_view(group))
        clusters_changed.send(sender=ClusterGroup, cluster_ids=sorted(_member_ids(group)), reason="group")
    return group


def update_group(group: ClusterGroup, *, user, source_ip: str = "", static_members=None, **changes) -> ClusterGroup:
    """Change a group; clusters that joined or left it are re-evaluated (and enforcement follows)."""
    require(user, "edit_group", group, message="Changing groups needs the global operator role.")
    unknown = set(changes) - {"description", "owner", "selector", "upgrade_target"}
    if unknown:
        raise AttachError(f"These fields cannot be changed: {', '.join(sorted(unknown))}")
    if "upgrade_target" in changes:
        changes["upgrade_target"] = _check_upgrade_target(changes["upgrade_target"])
    if "selector" in changes:
        selectors.parse(changes["selector"])
        changes["selector"] = changes["selector"].strip()
    with transaction.atomic():
        group = ClusterGroup.objects.select_for_update().get(pk=group.pk)
        before = group_audit_view(group)
        old_members = _member_ids(group)
        with guarded(old_members, user=user):  # members that leave may lose an enforced policy
            for field, value in changes.items():
                setattr(group, field, value)
            group.save()
            if static_members is not None:
                group.static_members.set(static_members)
        after = group_audit_view(group)
        record(user=user, action="group.update", target=group, source_ip=source_ip, before=before, after=after)
        new_members = _member_ids(group)
        clusters_changed.send(sender=ClusterGroup, cluster_ids=sorted(old_members | new_members), reason="group")
    return group


def delete_group(group: ClusterGroup, *, user, source_ip: str = "") -> None:
    """Delete a group with its policy assignments; its former members are re-evaluated."""
    require(user, "edit_group", group, message="Deleting groups needs the global operator role.")
    with transaction.atomic():
        # Lock its assignments first: evaluations writing violations for them finish before they are collected.
        list(group.assignments.select_for_update().values_list("pk"))
        members = _member_ids(group)
        record(user=user, action="group.delete", target=group, source_ip=source_ip, before=group_audit_view(group))
        with guarded(members, user=user):  # its assignments go with it
            group.delete()
        clusters_changed.send(sender=ClusterGroup, cluster_ids=sorted(members), reason="group")
