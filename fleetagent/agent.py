"""The agent's life: make a key pair, register with the bootstrap token, wait for an admin's decision, then
heartbeat, renew its credential at half its life, and carry out the hub's work items against its own API server.

State (the private key, the registration, the current short-lived credential) lives in the Secret
`fleetweb-agent-state`, which the agent may update by name only; the bootstrap Secret is deleted once spent, so no
long-lived secret of the hub's stays in the cluster. The agent only ever connects out: to its API server and to the
hub, whose answers it never runs, only the hub's work items (API calls on the member port's list) it carries out
with its own ServiceAccount's rights."""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fleetagent import VERSION
from fleetagent.hub import Hub, HubError, key_text, load_key, new_key, public_text
from fleetagent.kube import CallError, Kube
from fleetagent.watch import STARTING, Notifier, Watcher

log = logging.getLogger("fleetagent")

BOOTSTRAP_SECRET = "fleetweb-agent-bootstrap"
STATE_SECRET = "fleetweb-agent-state"
CHECK_EVERY = 600  # seconds between permission checks (each is a few SelfSubjectAccessReviews)
CHECKS = (  # (label, verb, group, resource): what the hub's features need of the agent's ServiceAccount
    ("list nodes", "list", "", "nodes"),
    ("list pods", "list", "", "pods"),
    ("list deployments", "list", "apps", "deployments"),
    ("apply deployments (rollouts)", "patch", "apps", "deployments"),
    ("manage admission policies (enforcement)", "create", "admissionregistration.k8s.io",
     "validatingadmissionpolicies"),
)
METHODS = {"GET", "PATCH", "DELETE", "POST", "PUT"}
BUSY_FOR = 5.0  # seconds of quick polling after the last work item, or after a report the hub answers by asking
PUSH_BYTES = 24 * 2**20  # of kinds' lists sent with one report of changes (the rest are named: the hub asks for them)


class CutOff(Exception):
    """The hub refused the agent's identity (revoked, detached, rejected, expired): it stops."""


class Agent:
    def __init__(self, *, hub_url: str, kube: Kube, namespace: str, hub_ca: str | None = None, workers: int = 4):
        self.kube, self.namespace, self.hub_url, self.hub_ca = kube, namespace, hub_url, hub_ca
        self.state: dict[str, str] = {}
        self.stop = threading.Event()
        self.heartbeat_seconds, self.poll_seconds, self.busy_poll, self.poll_hold = 30.0, 2.0, 0.1, 0.0
        self.idle_hold = 0.0  # > 0: the hub holds every poll until work comes (its agents' gateway)
        self.busy_until = 0.0  # poll every busy_poll seconds until then: work is flowing
        self.renew_at = 0.0
        self.last_error = ""
        self.checks: list[dict] = []
        self.checked_at = 0.0
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="work")
        self.hub: Hub | None = None
        self.cut_off = False
        self.watchers: dict[str, Watcher] = {}
        self.outbox: queue.Queue = queue.Queue()
        self.boot = uuid.uuid4().hex[:16]  # this process: the hub hands a restarted agent what the last one held
        self.notifier = Notifier(self._send_changes, self.stop, ready=self._ready)
        self.send_with: dict[str, list[str]] = {}  # path -> paths whose lists go with its (the hub says which)

    # -- state -------------------------------------------------------------------------------

    def _save(self) -> None:
        self.kube.write_secret(self.namespace, STATE_SECRET, self.state)

    def load(self) -> None:
        self.state = self.kube.secret(self.namespace, STATE_SECRET) or {}
        if not self.state.get("private_key"):
            self.state = {"private_key": key_text(new_key())}
            self._save()
        self.hub = Hub(self.hub_url, load_key(self.state["private_key"]), ca_file=self.hub_ca)
        self.hub.credential = self.state.get("credential", "")

    def _take(self, answer: dict) -> None:
        """A new credential and the hub's intervals."""
        assert self.hub is not None
        if answer.get("credential"):
            self.state["credential"] = self.hub.credential = answer["credential"]
            self.state["expires_at"] = answer.get("expires_at", "")
            self._save()
            self.renew_at = time.monotonic() + float(answer.get("renew_after_seconds", 1800))
        self.heartbeat_seconds = float(answer.get("heartbeat_seconds", self.heartbeat_seconds))
        self.poll_seconds = float(answer.get("poll_seconds", self.poll_seconds))
        self.busy_poll = float(answer.get("busy_poll_seconds", self.busy_poll))
        self.poll_hold = float(answer.get("poll_hold_seconds", self.poll_hold))
        self.idle_hold = float(answer.get("idle_hold_seconds", self.idle_hold))
        self._watch([path for path in answer.get("watch", []) if isinstance(path, str)])
        send_with = answer.get("send_with")
        if isinstance(send_with, dict):
            self.send_with = {str(k): [str(p) for p in v] for k, v in send_with.items() if isinstance(v, list)}
        if answer.get("report_all"):  # the hub has not heard from us (first heartbeat, or after an outage)
            for path in self.watchers:
                self.notifier.changed(path)

    def _watch(self, paths: list[str]) -> None:
        """Start a watch on each collected kind the hub names (once each; they run until the agent stops)."""
        for path in paths:
            if path.startswith("/") and path not in self.watchers and not self.stop.is_set():
                self.watchers[path] = Watcher(self.kube, path, self.notifier.changed, self.stop)
                self.watchers[path].start()

    def _ready(self, path: str) -> bool:
        watcher = self.watchers.get(path)
        return watcher is None or watcher.state != STARTING

    def _send_changes(self, kinds: list[str]) -> None:
        """Tell the hub which kinds changed, with each one's whole list from the watch cache where it is kept and
        fits: the hub writes those without asking; it asks (through work items) for the others."""
        assert self.hub is not None
        kinds = sorted({*kinds, *(also for path in kinds for also in self.send_with.get(path, [])
                                  if also in self.watchers)})
        lists: dict[str, str] = {}
        size = 0
        for path in kinds:
            watcher = self.watchers.get(path)
            text = watcher.list_text() if watcher is not None else None
            if text is not None and size + len(text) <= PUSH_BYTES:
                lists[path] = text
                size += len(text)
        answer = self.hub.call("POST", "changes", {"kinds": kinds, "lists": lists}, timeout=60)
        if answer.get("pull"):
            self.busy_until = time.monotonic() + BUSY_FOR  # the hub reads the rest through us now

    # -- registration ------------------------------------------------------------------------

    def identity(self) -> dict:
        version = self.kube.json("GET", "/version", timeout=10)
        system = self.kube.json("GET", "/api/v1/namespaces/kube-system", timeout=10)
        nodes = self.kube.json("GET", "/api/v1/nodes", query=[("limit", 500)], timeout=30)
        count = len(nodes.get("items", [])) + int(nodes.get("metadata", {}).get("remainingItemCount") or 0)
        return {"ca_fingerprint": self.kube.ca_fingerprint(), "kube_system_uid": system["metadata"]["uid"],
                "kubernetes_version": version.get("gitVersion", ""), "node_count": count,
                "server": self.kube.server}

    def register(self) -> None:
        """Present the bootstrap token once, then wait for the decision."""
        assert self.hub is not None
        if not self.state.get("registration"):
            bootstrap = self.kube.secret(self.namespace, BOOTSTRAP_SECRET) or {}
            if not bootstrap.get("token"):
                raise CutOff(f"no bootstrap token in Secret {self.namespace}/{BOOTSTRAP_SECRET}: apply the "
                             "manifest from the hub's 'Register a cluster' page")
            try:
                answer = self.hub.call("POST", "register", {
                    "bootstrap_token": bootstrap["token"], "public_key": public_text(self.hub.key),
                    "identity": self.identity(), "agent_version": VERSION}, credential=False)
            except HubError as exc:
                if exc.status in (400, 401, 403, 409):
                    raise CutOff(f"the hub refused the registration: {exc.message}") from None
                raise
            self.state["registration"] = answer["registration"]
            self._save()
            self.kube.delete_secret(self.namespace, BOOTSTRAP_SECRET)  # spent: nothing long-lived stays
            log.info("registered as %s: waiting for an admin to accept it", answer["registration"])
        while not self.stop.is_set():
            try:
                answer = self.hub.call("GET", f"registrations/{self.state['registration']}", credential=False)
            except HubError as exc:
                if exc.status in (403, 404, 409):
                    raise CutOff(f"registration ended: {exc.message}") from None
                self._trouble(exc)
                continue
            if answer.get("state") == "accepted":
                self._take(answer)
                log.info("accepted as cluster %s", answer.get("cluster"))
                return
            self.stop.wait(float(answer.get("poll_seconds", 2)))

    # -- running -----------------------------------------------------------------------------

    def _trouble(self, exc: Exception) -> None:
        self.last_error = str(exc)[:500]
        log.warning("%s", self.last_error)
        self.stop.wait(2.0)

    def _check_permissions(self) -> None:
        checks = []
        for label, verb, group, resource in CHECKS:
            review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                      "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource}}}
            try:
                result = self.kube.json("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                                        body=review, timeout=10)
                checks.append({"name": label, "ok": bool(result.get("status", {}).get("allowed"))})
            except (CallError, ValueError) as exc:
                checks.append({"name": label, "ok": False, "detail": str(exc)[:300]})
        self.checks, self.checked_at = checks, time.monotonic()

    def heartbeat_once(self) -> None:
        assert self.hub is not None
        if time.monotonic() - self.checked_at > CHECK_EVERY:
            self._check_permissions()
        answer = self.hub.call("POST", "heartbeat", {"agent_version": VERSION, "checks": self.checks,
                                                     "last_error": self.last_error})
        self._take(answer)
        if time.monotonic() >= self.renew_at:
            self._take(self.hub.call("POST", "credential", {}))
            log.info("credential renewed")

    def _heartbeats(self) -> None:
        while not self.stop.is_set():
            try:
                self.heartbeat_once()
            except HubError as exc:
                if exc.status == 401:
                    log.error("the hub cut this agent off: %s", exc.message)
                    self.cut_off = True
                    self.stop.set()
                    return
                self._trouble(exc)
                continue
            except CallError as exc:
                self._trouble(exc)
                continue
            self.stop.wait(self.heartbeat_seconds)

    def run(self) -> int:
        """Until stopped (0) or cut off by the hub (3)."""
        try:
            self.load()
            if not self.state.get("credential"):
                self.register()
        except CutOff as exc:
            log.error("%s", exc)
            return 3
        if self.stop.is_set():
            return 0
        self.notifier.start()
        beat = threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True)
        beat.start()
        sender = threading.Thread(target=self._deliver, name="answers", daemon=True)
        sender.start()
        while not self.stop.is_set():
            try:
                self.poll_once()
            except HubError as exc:
                if exc.status == 401:
                    log.error("the hub cut this agent off: %s", exc.message)
                    self.cut_off = True
                    break
                self._trouble(exc)
        self.stop.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        beat.join(timeout=5)
        sender.join(timeout=10)
        return 3 if self.cut_off else 0

    def poll_once(self) -> None:
        """One poll for work. Where the hub holds polls until work comes (its agents' gateway: idle_hold), the next
        poll goes as soon as an answer comes. Otherwise every poll_seconds when idle, and while work flows every
        busy_poll seconds, held open by the hub up to poll_hold seconds where it allows that. An empty answer that
        came back well before the hold it asked for waits like an unheld one (a hub that stopped holding is not
        asked in a tight loop)."""
        assert self.hub is not None
        busy = time.monotonic() < self.busy_until
        hold = self.poll_hold if busy else self.idle_hold
        started = time.monotonic()
        hub = self.hub
        answer = self._held(lambda: hub.call("GET", f"work?wait={hold:g}&boot={self.boot}", timeout=hold + 15)) \
            if hold > 0 else hub.call("GET", f"work?wait=0&boot={self.boot}", timeout=15)
        if answer is None:
            return  # stopping
        items = answer.get("items", [])
        for item in items:
            self.pool.submit(self._work, item)
        if items:
            self.busy_until = time.monotonic() + BUSY_FOR
        elif hold == 0 or time.monotonic() - started < hold / 2:
            self.stop.wait(self.busy_poll if busy else self.poll_seconds)

    def _held(self, call: Callable[[], dict]) -> dict | None:
        """A poll the hub may hold for many seconds, made in a thread of its own so that stopping does not wait for
        it: None once stopping (the poll is abandoned; the hub hands nothing to a poll whose agent hung up, and what
        it handed just before goes to this agent's next process)."""
        done: dict[str, Any] = {}
        finished = threading.Event()

        def run() -> None:
            try:
                done["answer"] = call()
            except BaseException as exc:  # noqa: BLE001 - raised again in the polling thread
                done["error"] = exc
            finally:
                finished.set()

        threading.Thread(target=run, name="held-poll", daemon=True).start()
        while not finished.wait(0.2):
            if self.stop.is_set():
                return None
        if "error" in done:
            raise done["error"]
        return done["answer"]

    # -- work ----------------------------------------------------------------------------------

    def _work(self, item: dict) -> None:
        self.outbox.put(self.execute(item))

    def _deliver(self) -> None:
        """Post answers as they are ready, together when several are (at most 50, and about 8 MiB, a post)."""
        assert self.hub is not None
        while not self.stop.is_set() or not self.outbox.empty():
            try:
                first = self.outbox.get(timeout=0.5)
            except queue.Empty:
                continue
            batch, size = [first], len(first.get("body") or "")
            while len(batch) < 50 and size < 8 * 2**20:
                try:
                    more = self.outbox.get_nowait()
                except queue.Empty:
                    break
                batch.append(more)
                size += len(more.get("body") or "")
            try:
                self.hub.call("POST", "answers", {"results": batch}, timeout=60)
            except HubError as exc:
                self.last_error = f"could not deliver {len(batch)} answer(s): {exc}"[:500]
                log.warning("%s", self.last_error)

    def execute(self, item: dict) -> dict[str, Any]:
        """One work item against the API server: an HTTP call on the member port's list, or the matching lines of a
        text document. What the hub asks is checked first: a path of the API server, a known method."""
        item_id = str(item.get("id", ""))
        timeout = min(float(item.get("timeout", 30)), max(0.1, float(item.get("deadline", 0)) - time.time()))
        path = str(item.get("path", ""))
        if not path.startswith("/") or "://" in path or ".." in path.split("?")[0].split("/"):
            return {"id": item_id, "error": {"kind": "protocol", "message": "refused: not an API server path"}}
        try:
            if item.get("op") == "lines":
                status, lines = self.kube.lines(path, str(item.get("prefix", "")), timeout=timeout,
                                                max_bytes=int(item.get("max_bytes", 2**26)))
                return {"id": item_id, "status": status, "lines": lines}
            method = str(item.get("method", "GET")).upper()
            if item.get("op") != "http" or method not in METHODS:
                return {"id": item_id, "error": {"kind": "protocol", "message": "refused: unknown operation"}}
            answer = self.kube.request(method, path, query=[tuple(q) for q in item.get("query") or []],
                                       body=item.get("body"), content_type=str(item.get("content_type")
                                                                               or "application/json"),
                                       timeout=timeout, max_bytes=int(item.get("max_bytes", 2**26)))
            try:
                text = answer.body.decode("utf-8")
            except UnicodeDecodeError:
                return {"id": item_id, "error": {"kind": "protocol", "message": "the answer is not UTF-8 text"}}
            return {"id": item_id, "status": answer.status, "body": text}
        except CallError as exc:
            return {"id": item_id, "error": {"kind": exc.kind, "message": exc.message}}
