"""Required labels on workloads (ownership, cost allocation)."""

from __future__ import annotations

from collections.abc import Iterator

from governance.rules import WORKLOAD_RESOURCES, Admission, Finding, Param, Rule, cel_list, register, where

LABEL_KEY = (r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
             r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


def required_labels(ctx, params) -> Iterator[Finding]:
    keys = params["labels"]
    for w in ctx.workloads:
        missing = [k for k in keys if k not in (w.get("labels") or {})]
        if missing:
            yield Finding(*where(w), f"missing label(s): {', '.join(missing)}")


register(Rule(
    key="required-labels",
    title="Workloads carry the required labels",
    why="Labels say who owns a workload and who pays for it; without them incidents and bills go nowhere.",
    severity="low",
    scope="workload",
    fix="Add the labels to the workload's metadata.labels.",
    check=required_labels,
    params=(Param("labels", "list", ["app.kubernetes.io/name"], "Label keys every workload must have",
                  required=True, pattern=LABEL_KEY, merge="union"),),
    admission=lambda params: Admission(
        resources=WORKLOAD_RESOURCES,
        validations=({"expression": f"{cel_list(params['labels'])}.all(k, has(object.metadata.labels) && "
                                    "k in object.metadata.labels)",
                      "message": "workloads must have the labels: " + ", ".join(params["labels"])
                                 + " (Fleetweb policy required-labels)", "reason": "Invalid"},),
    ),
))
