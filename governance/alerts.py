"""Governance's part of alerting (notifications/alerting.py): group scores below a rule's threshold and
failing enforcement installs are conditions; a violation opened (or reopened) at or above a rule's severity
is an event, sent from the evaluation that found it."""

from __future__ import annotations

from foundation.params import Param
from governance.choices import EnforcementState
from governance.compliance import group_scores
from governance.models import Enforcement
from inventory.choices import SEVERITY_RANK
from inventory.models import Cluster, ClusterGroup
from notifications import alerting, events
from notifications.alerting import Finding, Message, link

GROUP_SCORE = "group.score_low"
ENFORCEMENT_FAILED = "enforcement.failed"
VIOLATION_OPENED = "violation.opened"


@events.condition(GROUP_SCORE, "group compliance score below the threshold", params=(
    Param("score_below", "float", 80.0, "Alert when a group's compliance score is below this (0-100)", min_value=0.1,
          max_value=100, label="Group score below"),))
def _group_score_low(rule, scope, now):
    """Groups scoring under `score_below`: every group for a platform rule, the team's own groups (over the
    team's clusters only) for a team's rule."""

    groups = ClusterGroup.objects.all() if rule.team_id is None else ClusterGroup.objects.filter(teams=rule.team_id)
    groups = list(groups.only("pk", "name"))
    if not groups:
        return {}, set()
    scores = group_scores(groups, within=scope)
    below = float(events.param(rule, "score_below"))
    found = {}
    for group in groups:
        score = scores[group.pk]["score"]
        if score is not None and score < below:
            found[f"group:{group.pk}"] = Finding(
                state=f"below {below:g}", subject=f"group {group.name} compliance",
                text=f"score {score:.1f} is below {below:g}; "
                     f"{scores[group.pk]['open_violations']} open violation(s)",
                url=link(f"/groups/{group.name}/"), data={"group": group.name, "score": round(score, 1)})
    return found, set()


@events.condition(ENFORCEMENT_FAILED, "enforcement install failing")
def _enforcement_failed(rule, scope, now):

    rows = Enforcement.objects.filter(state=EnforcementState.FAILED, assignment__isnull=False)
    if scope is not None:
        rows = rows.filter(cluster_id__in=scope)
    if rule.environments:
        rows = rows.filter(cluster__environment__in=rule.environments)
    found = {}
    for pk, cluster_id, name, environment, rule_key, message in rows.values_list(
            "pk", "cluster_id", "cluster__name", "cluster__environment", "assignment__rule_key", "message"):
        found[f"enforcement:{pk}"] = Finding(
            state="failing", subject=f"enforcement of {rule_key} on {name}", text=message[:500],
            cluster_id=cluster_id, environment=environment, url=link(f"/clusters/{name}/?tab=compliance"),
            data={"cluster": name, "rule": rule_key})
    return found, set()


def violations_opened(opened: list[tuple[int, str, str, str, str, str]]) -> None:
    """Send violation.opened for (cluster id, rule key, severity, kind, namespace, name) rows just opened or
    reopened: an evaluation that opened none asks nothing; one that did asks first whether any rule listens."""
    if not opened:
        return
    rules = alerting.active_rules([VIOLATION_OPENED])
    if not rules:
        return
    clusters = dict((pk, (name, env)) for pk, name, env in Cluster.objects.filter(
        pk__in={row[0] for row in opened}).values_list("pk", "name", "environment"))
    messages = []
    for cluster_id, rule_key, severity, kind, namespace, name in opened:
        cluster, environment = clusters.get(cluster_id, ("?", ""))
        where = f"{namespace}/{name}" if namespace else name
        messages.append(Message(
            event=VIOLATION_OPENED, title=f"{severity} violation of {rule_key} on {cluster}",
            text=f"{kind} {where}", severity="critical" if severity == "critical" else "warning",
            url=link(f"/compliance/violations/?cluster={cluster}"), clusters=(cluster_id,),
            environments=(environment,), rank=SEVERITY_RANK.get(severity, 3),
            data={"cluster": cluster, "rule": rule_key, "severity": severity, "kind": kind, "namespace": namespace,
                  "name": name}))
    alerting.emit(*messages, rules=rules)


events.register(events.Event(VIOLATION_OPENED, "new open violation at or above the severity"))
