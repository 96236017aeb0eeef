"""Where an application runs: per cluster, the revision running, the rollout it came from, and its workloads'
health as the rollout's verification saw them and as the inventory sees them now. One view for the application
page and the API (`GET /api/v1/applications/{id}/clusters/`), in three queries whatever the fleet size."""

from __future__ import annotations

from django.db.models import OuterRef, Subquery

from inventory.models import Workload
from rollouts import manifests
from rollouts.choices import DriftState, TargetState
from rollouts.models import Application, Deployed, Target


def where_it_runs(app: Application) -> list[dict]:
    """[{cluster, environment, revision, since, rollout, healthy, drift, drift_label, workloads: [{kind, name,
    desired, available (as verified), in_inventory, available_now, replicas_now, restarts, crashlooping}]}] sorted
    by cluster name. `healthy` adds up: every workload available now and nothing Fleetweb applied drifted or
    missing there (by the last drift check)."""
    last_ready = (Target.objects.filter(stage__rollout__application=app, cluster=OuterRef("cluster"),
                                        state__in=[TargetState.READY, TargetState.ROLLED_BACK])
                  .order_by("-finished_at"))
    deployed = list(Deployed.objects.filter(application=app).select_related("cluster", "revision", "drift").annotate(
        rollout_id=Subquery(last_ready.values("stage__rollout_id")[:1]),
        observed=Subquery(last_ready.values("observed")[:1])).order_by("cluster__name"))
    wanted = {(o["kind"], o["name"]) for d in deployed for o in d.revision.objects_summary
              if o["kind"] in manifests.WORKLOADS}
    stored = {(w.cluster_id, w.kind, w.name): w for w in Workload.objects.filter(
        cluster__in=[d.cluster_id for d in deployed], namespace=app.namespace,
        name__in={name for _kind, name in wanted})}
    rows = []
    for d in deployed:
        verified = {(o["kind"], o["name"]): o for o in d.observed or []}
        workloads = []
        for o in d.revision.objects_summary:
            if o["kind"] not in manifests.WORKLOADS:
                continue
            now = stored.get((d.cluster_id, o["kind"], o["name"]))
            seen = verified.get((o["kind"], o["name"]), {})
            workloads.append({
                "kind": o["kind"], "name": o["name"],
                "desired": seen.get("desired"), "available": seen.get("available"),
                "in_inventory": now is not None, "available_now": now.is_available if now else None,
                "replicas_now": f"{now.replicas_available}/{now.replicas_desired}" if now else "",
                "restarts": now.restarts if now else None, "crashlooping": now.pods_crashlooping if now else None})
        drift = getattr(d, "drift", None)
        state = drift.state if drift is not None else DriftState.UNCHECKED
        rows.append({"cluster": d.cluster.name, "environment": d.cluster.environment, "revision": d.revision.number,
                     "since": d.at, "rollout": d.rollout_id, "workloads": workloads,
                     "drift": state, "drift_label": DriftState(state).label,
                     "healthy": all(w["available_now"] for w in workloads if w["in_inventory"])
                     and state not in (DriftState.DRIFTED, DriftState.MISSING)})
    return rows
