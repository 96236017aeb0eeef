"""What an approver sees before deciding: the change each cluster of the stage would get, against what it runs now,
what Fleetweb's policies of those clusters say of it, and the evidence of the stages before (where they ran, how
long healthy, restarts, failures).

"What it runs now" is the objects Fleetweb last applied and verified there (the frozen rendering of the last
ready target: the revision with the override it had then), so the diff shows exactly what the approval changes.
Clusters that would get the same change are shown together.
"""

from __future__ import annotations

import yaml
from django.core.cache import cache
from django.db.models import Count, Max, Sum

from governance import precheck
from governance.models import PolicyAssignment
from inventory.models import Workload
from rollouts import drift, manifests, rendering
from rollouts.choices import DriftState, StageState, TargetState
from rollouts.models import Drift, Rollout, Stage, Target

MAX_DRIFT_FIELDS = 10  # per object, on the approval page


def _yaml(objects: list[dict]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=True) if objects else ""


def stage_changes(stage: Stage) -> list[dict]:
    """[{clusters: [names], running: "r3" | "nothing", diff: unified diff text}] for the stage's targets.

    The rollout page polls every 2 s while a stage awaits approval: the diffs are cached until what they compare
    changes (the stage's frozen objects, by its digest; what the clusters run, by the application's ready targets)."""
    ready = Target.objects.filter(stage__rollout__application_id=stage.rollout.application_id,
                                  state=TargetState.READY).aggregate(n=Count("pk"), last=Max("pk"))
    key = f"fleetweb:stage-changes:{stage.pk}:{rendering.stage_digest(stage)}:{ready['n']}:{ready['last']}"
    return list(cache.get_or_set(key, lambda: _stage_changes(stage), timeout=600) or [])


def _stage_changes(stage: Stage) -> list[dict]:
    rollout = stage.rollout
    targets = list(stage.targets.select_related("cluster").order_by("cluster__name"))
    last_applied = {}
    for t in (Target.objects.filter(stage__rollout__application_id=rollout.application_id,
                                    cluster_id__in=[t.cluster_id for t in targets], state=TargetState.READY)
              .exclude(stage__rollout=rollout).select_related("applied_revision").order_by("finished_at")):
        last_applied[t.cluster_id] = t  # the newest wins
    groups: dict[tuple[str, str], list[str]] = {}
    for t in targets:
        before = last_applied.get(t.cluster_id)
        old = _yaml(before.rendered) if before else ""
        running = f"r{before.applied_revision.number}" if before and before.applied_revision else "nothing"
        text = manifests.diff(old, _yaml(t.rendered), old_label=f"{t.cluster.name}: running {running}",
                              new_label=f"{t.cluster.name}: r{rollout.revision.number}") or "(no change)"
        # One entry per distinct change: the labels name one cluster, so group on the body only.
        body = "\n".join(text.splitlines()[2:]) if text.startswith("---") else text
        groups.setdefault((running, body), []).append(t.cluster.name)
    return [{"clusters": names, "running": running, "diff": body} for (running, body), names in groups.items()]


def live_drift(stage: Stage) -> list[dict]:
    """What the stage's clusters run now that differs from what Fleetweb applied there (the last drift check), beside
    what this stage would set: [{cluster, object, path, live, applied, new, sets, managers, missing}]. "prod runs
    spec.replicas 5 now (kubectl-scale); this sets 2": an approver sees whose change the approval overwrites."""
    targets = {t.cluster_id: t for t in stage.targets.all()}
    drifts = (Drift.objects.filter(deployed__application_id=stage.rollout.application_id,
                                   deployed__cluster_id__in=list(targets),
                                   state__in=[DriftState.DRIFTED, DriftState.MISSING])
              .select_related("deployed__cluster").order_by("deployed__cluster__name"))
    rows = []
    for d in drifts:
        new = {(o.get("kind"), (o.get("metadata") or {}).get("name")): o
               for o in targets[d.deployed.cluster_id].rendered or []}
        for obj in d.objects_state or []:
            target = new.get((obj.get("kind"), obj.get("name")))
            base = {"cluster": d.deployed.cluster.name, "object": f"{obj.get('kind')} {obj.get('name')}",
                    "sets": target is not None}
            if obj.get("state") == DriftState.MISSING:
                rows.append({**base, "missing": True})
                continue
            values = drift.values_by_path(target) if target is not None else {}
            for f in (obj.get("fields") or [])[:MAX_DRIFT_FIELDS]:
                rows.append({**base, "missing": False, "path": f["path"], "live": f.get("live"),
                             "applied": f.get("applied"), "sets": f["path"] in values, "new": values.get(f["path"]),
                             "managers": ", ".join(m["manager"] for m in f.get("managers") or [])})
    return rows


def earlier_stages(rollout: Rollout, stage: Stage) -> list[dict]:
    """Each stage before `stage`: clusters, how long it ran healthy (ready to now), restarts of the application's
    workloads there by the last sync, failed targets."""
    rows = []
    workload_names = [o["name"] for o in rollout.revision.objects_summary if o["kind"] in manifests.WORKLOADS]
    for earlier in rollout.stages.filter(index__lt=stage.index).order_by("index"):
        targets = list(earlier.targets.select_related("cluster"))
        ready_at = [t.finished_at for t in targets if t.state == TargetState.READY and t.finished_at]
        restarts = Workload.objects.filter(cluster__in=[t.cluster_id for t in targets],
                                           namespace=rollout.application.namespace,
                                           name__in=workload_names).aggregate(n=Sum("restarts"))["n"] or 0
        rows.append({"index": earlier.index, "name": earlier.name, "state": earlier.state,
                     "succeeded": earlier.state == StageState.SUCCEEDED,
                     "clusters": sorted(t.cluster.name for t in targets),
                     "failed": sorted(t.cluster.name for t in targets if t.state == TargetState.FAILED),
                     "healthy_since": max(ready_at) if ready_at else None, "soak_seconds": earlier.soak_time,
                     "restarts": restarts})
    return rows


def stage_findings(stage: Stage) -> list[dict]:
    """What the rules assigned to the stage's clusters find in the objects frozen for each, enforced first:
    [{words, enforced, cluster, rule}] ("violates X on staging (audit only…)", "refused by prod: …"). Cached (the page
    polls every 2 s) until the frozen objects or any assignment changes, and for a minute at most (a cluster joining
    a group); the stage's start asks again in any case."""
    assigned = PolicyAssignment.objects.aggregate(n=Count("pk"), last=Max("updated_at"))
    key = (f"fleetweb:stage-findings:{stage.pk}:{rendering.stage_digest(stage)}:{assigned['n']}:"
           f"{assigned['last'].timestamp() if assigned['last'] else 0}")
    return list(cache.get_or_set(key, lambda: _stage_findings(stage), timeout=60) or [])


def _stage_findings(stage: Stage) -> list[dict]:
    targets = list(stage.targets.select_related("cluster"))
    found = precheck.check({t.cluster_id: t.rendered or [] for t in targets}, [t.cluster for t in targets])
    refusals = sorted((r for rs in found.values() for r in rs), key=lambda r: (not r.enforced, r.cluster, r.rule))
    return [r.as_dict() for r in refusals]
