"""Gates: what must hold before a stage applies anything, and before it counts as succeeded.

The engine asks `entry(stage, now)` while a stage is pending or awaiting approval and starts it only when every
entry gate passed; it asks `exit(stage, now)` while the stage soaks and marks it succeeded only when every exit
gate passed. Each target's readiness is judged by `health` against the stage's health deadline. A gate that does
not pass says when to look again (`recheck_at`, None to wait for a click or another event) and why, in words the
stage page shows; one that passes may say when that lapses (an approval expiring while another gate holds).

Entry gates: the enforced policies (`PolicyGate`), the approvals with their expiry and conditions (`ApprovalGate`),
the change windows and busy clusters (`WindowGate`). Exit: the soak (`SoakGate`).

A new gate is a class with `name` and `check(stage, now) -> Verdict`, appended to `ENTRY` or `EXIT` with
`register`. Copy `tests/rollouts/test_gates.py`. Gates run inside the engine's `Fence.hold` (the rollout row is
locked); they may read anything, and write only the stage they are given and its approvals (an expired approval,
or one whose condition failed, is voided with the reason).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Protocol

from governance import precheck
from inventory.choices import Environment
from rollouts import approvals, calendar, dryrun, rendering, services
from rollouts.choices import Decision
from rollouts.models import Stage, Target


@dataclasses.dataclass
class Verdict:
    passed: bool
    recheck_at: datetime | None = None  # when to look again (passed: when that may lapse); None: on a click or event
    message: str = ""
    evidence: dict = dataclasses.field(default_factory=dict)  # recorded with the stage's start or success
    refused: bool = False  # waiting cannot help: the engine fails the stage before it starts, with `message`
    not_yet: bool = False  # not even ready to ask approvers (the revision is still being checked)


class Gate(Protocol):
    name: str

    def check(self, stage: Stage, now: datetime) -> Verdict: ...


class ApprovalGate:
    """Enough valid approvals (`approvals.valid_approvals`: not expired, not the requester, covering the digests
    rendered now). A stage reaching a prod cluster needs at least one, checked against the clusters' environment
    now, not only when the rollout was made."""

    name = "approval"

    def check(self, stage: Stage, now: datetime) -> Verdict:
        prod = list(stage.targets.filter(cluster__environment=Environment.PROD)
                    .values_list("cluster__name", flat=True)[:5])
        if prod and stage.approvals_required < 1:
            note = services.prod_approval_note(prod)
            Stage.objects.filter(pk=stage.pk).update(approvals_required=1, message=note)
            stage.approvals_required, stage.message = 1, note
        if not stage.approvals_required:
            return Verdict(True)
        lapsed = list(stage.approvals.filter(decision=Decision.APPROVE, voided_at__isnull=True,
                                             revision_id=stage.rollout.revision_id, expires_at__lte=now)
                      .select_related("user"))
        if lapsed:  # void, saying so, and the stage asks again
            lasts, why = approvals.approval_ttl(stage)
            approvals.void([(a, f"expired at {a.expires_at:%Y-%m-%d %H:%M} UTC before the stage started (approvals "
                                f"of this stage last {approvals.duration(lasts)}: {why})") for a in lapsed], stage, now)
        valid = approvals.valid_approvals(stage, now=now)
        wait: list[datetime] = []
        if len(valid) >= stage.approvals_required:
            # Enough approvals: their conditions must hold now, when the stage would start.
            failed, counted = [], []
            for a in valid:
                state, when, why = approvals.condition_verdict(a, stage, now)
                if state == "fail":
                    failed.append((a, f"its condition failed: {why}"))
                elif state == "wait":
                    wait.append(when or now + timedelta(minutes=1))
                else:
                    counted.append(a)
            approvals.void(failed, stage, now)
            valid = [a for a in valid if a not in [f for f, _why in failed]]
            ready = counted
        else:
            ready = valid
        evidence = {"approved_by": [a.user.get_username() for a in valid], "digests": rendering.stage_digests(stage),
                    "conditions": {a.user.get_username(): a.conditions for a in valid if a.conditions}}
        if len(ready) >= stage.approvals_required and not wait:
            # Passed; should another gate hold the stage, look again when an approval counted would lapse.
            return Verdict(True, recheck_at=min(a.expires_at for a in ready) if ready else None, evidence=evidence)
        if len(valid) >= stage.approvals_required:
            return Verdict(False, recheck_at=min(wait), evidence=evidence,
                           message="waiting for the approvals' conditions: " + "; ".join(
                               approvals.describe_conditions(a.conditions) for a in valid if a.conditions))
        # Approvals expire: look again when the oldest one counted would lapse, else wait for a click.
        return Verdict(False, recheck_at=min((a.expires_at for a in valid), default=None),
                       message=f"{len(valid)} of {stage.approvals_required} approval(s)", evidence=evidence)


def policy_refusals(stage: Stage) -> dict[int, list[precheck.Refusal]]:
    """{target id: what an enforced Fleetweb policy of its cluster refuses in the objects frozen for it} (targets
    with none left out); the same words as the revision's check at save."""
    targets = list(stage.targets.select_related("cluster"))
    found = precheck.check({t.cluster_id: t.rendered or [] for t in targets}, [t.cluster for t in targets])
    return {t.pk: refused for t in targets if (refused := [r for r in found[t.cluster_id] if r.enforced])}


class PolicyGate:
    """The revision's check is done, and Fleetweb's enforced policies of the stage's clusters, asked now of what
    each would receive, refuse no more targets than the stage may fail: otherwise the stage fails before anyone is
    asked to approve it, naming each cluster and policy. Refused targets within the budget fail at apply with the
    same words (`rollouts.engine._apply_target`)."""

    name = "policies"

    def check(self, stage: Stage, now: datetime) -> Verdict:
        revision = stage.rollout.revision
        if (revision.validation or {}).get("state") == dryrun.CHECKING:
            return Verdict(False, recheck_at=now + timedelta(seconds=3), not_yet=True,
                           message=f"waiting for the dry run of revision {revision.number}")
        refusals = policy_refusals(stage)
        if not refusals:
            return Verdict(True)
        words = "; ".join(r.words() for refused in refusals.values() for r in refused)
        if len(refusals) > stage.failures_allowed:
            # The engine marks these targets with the same words (`engine._refuse_stage`).
            return Verdict(False, refused=True, message=words, evidence={"target_refusals": {
                pk: "; ".join(r.words() for r in refused) for pk, refused in refusals.items()}})
        return Verdict(True, evidence={"refused_by_policy": words})


class SoakGate:
    """Every target stayed ready for the stage's soak time after the last one became ready."""

    name = "soak"

    def check(self, stage: Stage, now: datetime) -> Verdict:
        if stage.soak_until and now < stage.soak_until:
            return Verdict(False, recheck_at=stage.soak_until, message=f"soaking until {stage.soak_until:%H:%M:%S}")
        return Verdict(True, evidence={"soak_seconds": stage.soak_time})


class WindowGate:
    """Every target's cluster may be changed now (`rollouts.calendar.decisions`): no freeze open, an allow window open
    where it has any, and not marked busy. Otherwise the stage waits, saying which windows (or busy clusters) hold it
    and when it opens, on the stage (`Stage.window_hold`: the page, the API and /metrics read it). An admin's
    override (`calendar.override_stage`) lifts the windows, never a busy cluster."""

    name = "window"

    def check(self, stage: Stage, now: datetime) -> Verdict:
        clusters = [t.cluster for t in stage.targets.select_related("cluster")]
        decided = calendar.decisions(clusters, now)
        overridden = bool(stage.window_override)
        held = [(c, d) for c in clusters if not (d := decided[c.pk]).allowed and (d.busy or not overridden)]
        if not held:
            if stage.window_hold:
                Stage.objects.filter(pk=stage.pk).update(window_hold={})
                stage.window_hold = {}
            return Verdict(True, evidence={"window_override": stage.window_override} if overridden else {})
        busy = [c.name for c, d in held if d.busy]
        opening = [d.opens_at for _c, d in held if not d.busy and d.opens_at is not None]
        never = any(not d.busy and d.opens_at is None for _c, d in held)
        # A busy cluster is cleared by a person, and windows can be edited: look again within a minute, or when the
        # last window holding it opens.
        recheck = now + timedelta(minutes=1) if busy or never else max(opening)
        opens_at = None if busy or never else max(opening)
        hold = {"clusters": [c.name for c, _d in held], "busy": busy,
                "windows": sorted({r.name for _c, d in held for r in d.holding}),
                "opens_at": opens_at.isoformat() if opens_at else None}
        words = "; ".join(f"{c.name} is {d.words()}" if d.busy else f"{c.name}: {d.words()}" for c, d in held[:5])
        more = f" (and {len(held) - 5} more)" if len(held) > 5 else ""
        if stage.window_hold != hold:
            Stage.objects.filter(pk=stage.pk).update(window_hold=hold)
            stage.window_hold = hold
        return Verdict(False, recheck_at=recheck, message=f"waiting for a change window: {words}{more}")


ENTRY: list[Gate] = [PolicyGate(), ApprovalGate(), WindowGate()]
EXIT: list[Gate] = [SoakGate()]


def register(gate: Gate, *, at: str) -> None:
    """Add a gate to the stage's entry ("entry") or exit ("exit")."""
    {"entry": ENTRY, "exit": EXIT}[at].append(gate)


def _all(gates: list[Gate], stage: Stage, now: datetime) -> Verdict:
    verdicts = [gate.check(stage, now) for gate in gates]
    waiting = [v for v in verdicts if not v.passed]
    evidence = {k: v for verdict in verdicts for k, v in verdict.evidence.items()}
    if not waiting:
        return Verdict(True, evidence=evidence)
    refused = [v for v in waiting if v.refused]
    if refused:
        return Verdict(False, refused=True, message="; ".join(v.message for v in refused), evidence=evidence)
    # A gate that passed may say when that lapses (an approval expiring while a window holds the stage).
    times = [v.recheck_at for v in verdicts if v.recheck_at is not None]
    return Verdict(False, recheck_at=min(times) if times else None, not_yet=any(v.not_yet for v in waiting),
                   message="; ".join(v.message for v in waiting if v.message), evidence=evidence)


def entry(stage: Stage, now: datetime) -> Verdict:
    """May the stage start applying now?"""
    return _all(ENTRY, stage, now)


def exit(stage: Stage, now: datetime) -> Verdict:  # noqa: A001 - the stage's exit, next to its entry
    """May the stage count as succeeded now?"""
    return _all(EXIT, stage, now)


# --- health: each target's objects ready before its deadline ------------------------------------------------


def health_deadline(stage: Stage, now: datetime) -> datetime:
    """When a target applied now must be ready by."""
    return now + timedelta(seconds=stage.health_deadline)


def health(target: Target, observed: list[dict], problem: str, now: datetime) -> tuple[str, str]:
    """('ready' | 'waiting' | 'failed', message) for a target whose workloads read back as `observed` (or could
    not be read: `problem`). An unreachable cluster is waited for until the deadline like a slow one."""
    if not problem and all(o["ready"] for o in observed):
        return "ready", ""
    waiting = problem or "; ".join(f"{o['kind']} {o['name']}: {o['updated']}/{o['desired']} updated, "
                                   f"{o['available']}/{o['desired']} available" for o in observed if not o["ready"])
    if target.deadline and now >= target.deadline:
        return "failed", f"not ready within the health deadline: {waiting}"
    return "waiting", waiting
