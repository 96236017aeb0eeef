"""Explicit builders for test data (no random factories)."""

from __future__ import annotations

from django.contrib.auth.models import Group, User
from django.db.models import F
from django.utils import timezone

from inventory.choices import AuthMethod, ClusterStatus, Environment
from inventory.models import Cluster, ClusterCredential, Node, Workload


def make_user(username: str, *roles: str, password: str = "pw-for-tests-1") -> User:
    user = User.objects.create_user(username=username, password=password)
    for role in roles:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def make_cluster(name: str = "c1", *, environment: str = Environment.DEV, status: str = ClusterStatus.CONNECTED,
                 region: str = "eu-west-1", labels: dict | None = None, version: str = "v1.35.4",
                 nodes: int = 0, server: str = "https://127.0.0.1:6443", **fields) -> Cluster:
    """A cluster row with token credentials pointing nowhere useful (for page/API tests)."""
    cluster = Cluster.objects.create(
        name=name, environment=environment, status=status, region=region, labels=labels or {},
        kubernetes_version=version, server=server, auth_method=AuthMethod.TOKEN,
        node_count=nodes, ready_node_count=nodes, last_seen_at=timezone.now(), last_sync_at=timezone.now(), **fields)
    ClusterCredential.objects.create(cluster=cluster, ciphertext=ClusterCredential.seal(
        {"method": "token", "server": server, "ca_data": "", "token": f"secret-token-of-{name}"}))
    for i in range(nodes):
        Node.objects.create(cluster=cluster, uid=f"{name}-n{i}", name=f"{name}-node-{i}", ready=True,
                            kubelet_version=version)
    return cluster


def make_workload(cluster: Cluster, name: str, *, kind: str = "Deployment", namespace: str = "default",
                  desired: int = 1, available: int = 1) -> Workload:
    workload = Workload.objects.create(cluster=cluster, uid=f"{cluster.name}-{namespace}-{name}", name=name,
                                       kind=kind, namespace=namespace, replicas_desired=desired,
                                       replicas_available=available, replicas_ready=available)
    # As the sync keeps it, in the same transaction as the rows: the workloads API counts an unfiltered list by it.
    Cluster.objects.filter(pk=cluster.pk).update(workload_count=F("workload_count") + 1)
    return workload
