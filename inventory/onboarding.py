"""The onboarding wizard's state: drafts that hold what is being attached (encrypted, never sent back to the
browser) and connection tests, which run in a worker within one time budget, every context at once.

Pages and the API call these; the task `inventory.tasks.test_attach_connection` gets only a draft's id.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor, wait

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from foundation.audit import record
from foundation.errors import ServiceError
from foundation.queueing import enqueue_after_commit
from inventory import access, kubeconfigs, port, services
from inventory.models import AttachDraft
from inventory.people.access import can, require

EXEC_ADMIN_ONLY = ("Only admins may attach a kubeconfig that runs an exec plugin, or test it: the plugin runs on "
                   "Fleetweb's workers with Fleetweb's own cloud identity.")


class DraftError(ValueError):
    """A draft that is not there any more (expired, attached, someone else's); the message says what to do."""


def require_exec_rights(user, targets: list[tuple[str, dict]]) -> None:
    """Refuse (403) before anything is queued or run when a chosen target would run an exec plugin and `user` is
    not an admin (attach and credential updates ask the same in `services`). System callers pass."""
    chosen = [context or port.server_of(credentials) for context, credentials in targets if port.uses_exec(credentials)]
    if chosen and user is not None and not can(user, "run_exec_plugin"):
        raise ServiceError(f"{EXEC_ADMIN_ONLY} Leave out {', '.join(chosen)} or ask an admin.", status=403)


def save_draft(*, user, method: str, source: dict, draft: AttachDraft | None = None) -> AttachDraft:
    """Hold `source` ({"kubeconfig": parsed} or {"credentials": {...}}) for this user; replaces `draft`'s. Holding
    runs nothing: testing or attaching a context is what asks for the rights it needs."""
    require(user, "attach", message="Attaching clusters needs the global operator role.")
    now = timezone.now()
    AttachDraft.objects.filter(expires_at__lt=now).delete()
    summary = _summary(method, source)
    if draft is not None and draft.created_by_id == user.pk:
        unchanged = draft.method == method and draft.open() == source
        draft.method, draft.ciphertext, draft.summary = method, AttachDraft.seal(source), summary
        draft.expires_at = now + AttachDraft.TTL
        fields = ["method", "ciphertext", "summary", "expires_at"]
        if not unchanged:  # a test of other credentials says nothing of these
            draft.test_state, draft.test_results, draft.test_error = "", [], ""
            draft.test_request = {}
            fields += ["test_state", "test_results", "test_error", "test_request"]
        draft.save(update_fields=fields)  # (a worker may be writing the test's result meanwhile)
        return draft
    return AttachDraft.objects.create(created_by=user, method=method, ciphertext=AttachDraft.seal(source),
                                      summary=summary, expires_at=now + AttachDraft.TTL)


def _summary(method: str, source: dict) -> str:
    if method == "kubeconfig":
        return "contexts: " + ", ".join(kubeconfigs.context_names(source["kubeconfig"]))[:500]
    return port.server_of(source["credentials"])[:512]


def draft_of(user, draft_id) -> AttachDraft:
    """The user's unexpired draft; DraftError otherwise (another user's draft reads as absent)."""
    try:
        key = uuid.UUID(str(draft_id))
    except ValueError:
        raise DraftError("The attach form is out of date: paste the credentials again.") from None
    draft = AttachDraft.objects.filter(pk=key, created_by=user, expires_at__gte=timezone.now()).first()
    if draft is None:
        raise DraftError("The credentials held for this attach expired or were used: paste them again.")
    return draft


def test_passed(draft: AttachDraft | None, contexts: list[str]) -> bool:
    """True when the draft's last connection test, of exactly what it holds now and these contexts, passed for
    every target (optional checks aside)."""
    if draft is None or draft.test_state != "done" or not draft.test_results:
        return False
    if sorted((draft.test_request or {}).get("contexts") or []) != sorted(contexts):
        return False
    return all(result.get("ok") for result in draft.test_results)


def discard(draft: AttachDraft | None) -> None:
    if draft is not None and draft.pk:
        AttachDraft.objects.filter(pk=draft.pk).delete()


def targets_of(draft: AttachDraft, contexts: list[str]) -> list[tuple[str, dict]]:
    """[(context or "", credentials)] of what the draft holds; KubeconfigError names a bad context."""
    source = draft.open()
    if draft.method == "token":
        return [("", source["credentials"])]
    parsed = source["kubeconfig"]
    return [(context, kubeconfigs.credentials_from_kubeconfig(kubeconfigs.extract_context(parsed, context)))
            for context in contexts]


def request_test(draft: AttachDraft, *, contexts: list[str], insecure: bool, user, source_ip: str = "") -> None:
    """Queue the connection test of the draft's targets in a worker (the page polls `draft.test_state`)."""
    require(user, "attach", message="Testing a connection needs the global operator role.")
    try:
        targets = targets_of(draft, contexts)
    except kubeconfigs.KubeconfigError:
        targets = []  # the worker reports the bad context
    require_exec_rights(user, targets)
    with transaction.atomic():
        AttachDraft.objects.filter(pk=draft.pk).update(
            test_state="queued", test_requested_at=timezone.now(), test_finished_at=None, test_results=[],
            test_error="", test_request={"contexts": contexts, "insecure": insecure})
        record(user=user, action="cluster.test_connection", target_name=draft.summary, source_ip=source_ip,
               after={"contexts": contexts, "insecure": insecure})
        enqueue_after_commit("inventory.tasks.test_attach_connection", str(draft.pk), what="connection test")


def run_test(draft_id: str) -> str:
    """In a worker: test every target concurrently within FLEETWEB_CONNECTION_TEST_BUDGET seconds; store the
    report on the draft. Never raises for a cluster's failure."""
    draft = AttachDraft.objects.filter(pk=draft_id, expires_at__gte=timezone.now()).first()
    if draft is None or draft.test_state not in ("queued", "running"):
        return "gone"
    AttachDraft.objects.filter(pk=draft.pk).update(test_state="running")
    request = draft.test_request or {}
    budget = settings.FLEETWEB_CONNECTION_TEST_BUDGET
    results, error = [], ""
    try:
        targets = targets_of(draft, request.get("contexts") or [])
    except kubeconfigs.KubeconfigError as exc:
        targets, error = [], str(exc)
    # The worker asks again (a draft held before a role was taken away, or a task queued by another door): a plugin
    # runs only for an admin's draft.
    creator = draft.created_by
    refused = [t for t in targets if port.uses_exec(t[1]) and not (creator and can(creator, "run_exec_plugin"))]
    targets = [t for t in targets if t not in refused]
    if targets:
        results = test_all(targets, insecure=bool(request.get("insecure")), budget=budget)
    results += [{"target": context or port.server_of(credentials), "ok": False, "version": "",
                 "checks": [{"name": "connection test", "ok": False, "optional": False, "detail": EXEC_ADMIN_ONLY}]}
                for context, credentials in refused]
    twins = services.already_attached(targets)
    same = services.attached_by_uid([r.get("kube_system_uid", "") for r in results])
    for result in results:
        existing = twins.get(result["target"]) or same.get(result.get("kube_system_uid", ""))
        if existing:
            result["checks"].append({"name": "not attached yet", "ok": False, "optional": True,
                                     "detail": f"this cluster is already attached as cluster {existing} (same API "
                                               "server or the same kube-system namespace): attaching it again "
                                               "needs 'Attach anyway'"})
    AttachDraft.objects.filter(pk=draft.pk).update(test_state="done", test_finished_at=timezone.now(),
                                                   test_results=results, test_error=error)
    return "done"


def test_all(targets: list[tuple[str, dict]], *, insecure: bool, budget: float) -> list[dict]:
    """Each target's connection report as a dict, all tested at once; whatever is not done by the budget's end
    reads as timed out."""
    at = time.monotonic() + budget

    def one(credentials: dict) -> access.ConnectionReport:
        with port.deadline(at):
            return access.test_connection(credentials, insecure=insecure)

    pool = ThreadPoolExecutor(max_workers=min(16, len(targets)), thread_name_prefix="connection-test")
    futures = [pool.submit(one, credentials) for _context, credentials in targets]
    wait(futures, timeout=budget + 2)
    pool.shutdown(wait=False, cancel_futures=True)
    results = []
    for (context, credentials), future in zip(targets, futures, strict=True):
        name = context or port.server_of(credentials)
        if future.done() and future.exception() is None:
            report = future.result()
            results.append({"target": name, "ok": report.ok, "version": report.version,
                            "kube_system_uid": report.kube_system_uid,
                            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail, "optional": c.optional}
                                       for c in report.checks]})
        else:
            results.append({"target": name, "ok": False, "version": "",
                            "checks": [{"name": "connection test", "ok": False, "optional": False,
                                        "detail": f"not finished within the {budget:g}s budget"}]})
    return results
