"""Choices of the inventory app."""

from django.db import models


class Environment(models.TextChoices):
    DEV = "dev", "dev"
    STAGING = "staging", "staging"
    PROD = "prod", "prod"


class ClusterStatus(models.TextChoices):
    """A cluster's health as the last sync saw it; only `connected` is healthy."""

    PENDING = "pending", "pending first sync"
    CONNECTED = "connected", "connected"
    DEGRADED = "degraded", "degraded"
    UNREACHABLE = "unreachable", "unreachable"
    UNAUTHORIZED = "unauthorized", "unauthorized"
    TLS_ERROR = "tls_error", "TLS error"
    ERROR = "error", "error"
    STALE = "stale", "stale"


# Statuses listed first on the overview, worst first.
STATUS_SEVERITY = {
    ClusterStatus.UNREACHABLE: 0,
    ClusterStatus.UNAUTHORIZED: 1,
    ClusterStatus.TLS_ERROR: 2,
    ClusterStatus.ERROR: 3,
    ClusterStatus.STALE: 4,
    ClusterStatus.DEGRADED: 5,
    ClusterStatus.PENDING: 6,
    ClusterStatus.CONNECTED: 7,
}


class Provider(models.TextChoices):
    ALIBABA = "alibaba", "Alibaba Cloud ACK"
    AWS = "aws", "Amazon EKS"
    GCE = "gce", "Google GKE"
    AZURE = "azure", "Azure AKS"
    KIND = "kind", "kind"
    K3S = "k3s", "k3s"
    KWOK = "kwok", "KWOK"
    OTHER = "other", "other"
    UNKNOWN = "unknown", "unknown"


class AuthMethod(models.TextChoices):
    TOKEN = "token", "bearer token"
    CLIENT_CERT = "client_cert", "client certificate"
    KUBECONFIG = "kubeconfig", "kubeconfig"
    AGENT = "agent", "agent"


class WorkloadKind(models.TextChoices):
    DEPLOYMENT = "Deployment", "Deployment"
    STATEFULSET = "StatefulSet", "StatefulSet"
    DAEMONSET = "DaemonSet", "DaemonSet"
    JOB = "Job", "Job"
    CRONJOB = "CronJob", "CronJob"


# The one definition of an unavailable workload, read by the workload badge, the `?unavailable=` filter, the
# cluster's "N down" counter and its health: a Deployment, StatefulSet or DaemonSet with fewer available replicas
# than desired, or any workload (Jobs and CronJobs too) with a crash-looping pod. Replica counts say nothing about
# a Job, and a crash loop is an outage even in the seconds its replica still counts as available.
# `inventory.querysets.WorkloadQuerySet.unavailable` is the same rule in SQL; a test holds them together.
LONG_RUNNING = (WorkloadKind.DEPLOYMENT, WorkloadKind.STATEFULSET, WorkloadKind.DAEMONSET)


def workload_unavailable(kind: str, *, desired: int, available: int, crashlooping: int) -> bool:
    return crashlooping > 0 or (kind in LONG_RUNNING and available < desired)


class SyncOutcome(models.TextChoices):
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    PARTIAL = "partial", "partial"
    FAILED = "failed", "failed"


class TeamRole(models.TextChoices):
    """A member's role in one team: reads its clusters; deploys its applications; approves them."""

    VIEWER = "viewer", "viewer"
    OPERATOR = "operator", "operator"
    APPROVER = "approver", "approver"


class GrantSource(models.TextChoices):
    """Who gave a team role: a person in Fleetweb (kept) or the identity provider's claim (re-synced each login)."""

    MANUAL = "manual", "given in Fleetweb"
    SSO = "sso", "from the identity provider"


# Statuses that alert (cluster.status rules) and whose end is a recovery.
ALERTING_STATUSES = (ClusterStatus.UNREACHABLE, ClusterStatus.UNAUTHORIZED, ClusterStatus.TLS_ERROR,
                     ClusterStatus.ERROR, ClusterStatus.STALE)


class Severity(models.TextChoices):
    """How bad a broken rule is (governance's rules; alert rules filter violations by it)."""

    CRITICAL = "critical", "critical"
    HIGH = "high", "high"
    MEDIUM = "medium", "medium"
    LOW = "low", "low"


SEVERITY_RANK: dict[str, int] = {Severity.CRITICAL: 0, Severity.HIGH: 1, Severity.MEDIUM: 2, Severity.LOW: 3}


class ClusterEventKind(models.TextChoices):
    """What a line of a cluster's History records."""

    ATTACHED = "attached", "attached"
    STATUS = "status", "status"
    VERSION = "version", "Kubernetes version"
    NODES = "nodes", "node count"
    CREDENTIALS = "credentials", "credentials"
    METADATA = "metadata", "metadata"
    POLICY = "policy", "policy enforcement"
    ROLLOUT = "rollout", "rollout"
