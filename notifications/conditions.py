"""The clusters' alert conditions (inventory's data, registered by the notifications app, which sits above it): a
cluster in an alerting status, and credentials about to expire."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q

from foundation.params import Param
from inventory.choices import ALERTING_STATUSES
from inventory.models import Cluster
from notifications.alerting import Finding, link
from notifications.events import condition, param

CLUSTER_STATUS = "cluster.status"
CREDENTIALS_EXPIRING = "cluster.credentials_expiring"


def _clusters_of(rule, scope):
    rows = Cluster.objects.all()
    if scope is not None:
        rows = rows.filter(pk__in=scope)
    if rule.environments:
        rows = rows.filter(environment__in=rule.environments)
    return rows


@condition(CLUSTER_STATUS, "cluster unreachable, unauthorized, TLS error, error or stale (and recovery)")
def _cluster_status(rule, scope, now):
    """Clusters in an alerting status for at least the hold-down; any cluster whose status changed within it is
    left as it is (neither opened nor closed), which is what holds a flapping cluster down."""
    since = now - timedelta(seconds=rule.hold_down)
    found, held = {}, set()
    rows = (_clusters_of(rule, scope).filter(Q(status__in=ALERTING_STATUSES) | Q(status_changed_at__gt=since))
            .values_list("pk", "name", "status", "status_reason", "status_changed_at", "environment"))
    for pk, name, status, reason, changed_at, environment in rows:
        key = f"cluster:{pk}"
        if changed_at is not None and changed_at > since:
            held.add(key)
        elif status in ALERTING_STATUSES:
            found[key] = Finding(state=status, subject=f"cluster {name}", text=reason, cluster_id=pk,
                                 url=link(f"/clusters/{name}/"), environment=environment,
                                 data={"cluster": name, "environment": environment, "status": status})
    return found, held


@condition(CREDENTIALS_EXPIRING, "cluster credentials nearing expiry", params=(
    Param("expiry_days", "int", 14, "Alert this many days before a cluster's credentials expire", min_value=1,
          max_value=365, label="Credentials expiring within (days)"),))
def _credentials_expiring(rule, scope, now):
    horizon = now + timedelta(days=int(param(rule, "expiry_days")))
    found = {}
    rows = (_clusters_of(rule, scope).filter(credentials_expire_at__lte=horizon)
            .values_list("pk", "name", "credentials_expire_at", "environment"))
    for pk, name, expires, environment in rows:
        state = "expired" if expires <= now else f"expires in {max(1, (expires - now).days)} day(s)"
        found[f"credentials:{pk}"] = Finding(
            state="expired" if expires <= now else "expiring", subject=f"credentials of cluster {name}",
            text=f"{state} ({expires:%Y-%m-%d %H:%M} UTC); replace them on the cluster's Edit page", cluster_id=pk,
            url=link(f"/clusters/{name}/edit/"), environment=environment,
            data={"cluster": name, "expires_at": expires.isoformat()})
    return found, set()
