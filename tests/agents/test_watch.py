"""The agent's change notifier and watch cache: the first change goes at once, later ones gather and go at most once
per interval, kinds it could not deliver are kept for the next try, a kind's list is kept whole (or, too large, only
named), and a report carries the lists that go together and fit."""

from __future__ import annotations

import json
import threading
import time

from fleetagent import watch
from fleetagent.watch import Notifier, Watcher


def test_changes_gather_between_sends_and_survive_a_failed_send():
    sent: list[tuple[float, list[str]]] = []
    failures = [True]
    stop = threading.Event()

    def send(kinds):
        if failures and failures.pop():
            raise ConnectionError("hub away")
        sent.append((time.monotonic(), kinds))

    notifier = Notifier(send, stop, min_interval=0.5)
    notifier.start()
    try:
        notifier.changed("/api/v1/pods")
        deadline = time.monotonic() + 10
        while not sent and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sent and sent[0][1] == ["/api/v1/pods"]  # kept through the failed try
        for path in ("/api/v1/nodes", "/api/v1/pods", "/api/v1/nodes"):
            notifier.changed(path)
        while len(sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sent[1][1] == ["/api/v1/nodes", "/api/v1/pods"]
        assert sent[1][0] - sent[0][0] >= 0.45
    finally:
        stop.set()
        notifier.thread.join(5)


def _wait(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_kind_still_making_its_first_list_waits_for_it():
    sent: list[list[str]] = []
    stop = threading.Event()
    ready = {"/api/v1/pods": False}
    notifier = Notifier(sent.append, stop, min_interval=0.1, ready=lambda path: ready.get(path, True))
    notifier.start()
    try:
        notifier.changed("/api/v1/pods")
        notifier.changed("/api/v1/nodes")
        _wait(lambda: sent)
        assert sent == [["/api/v1/nodes"]], "the pods wait for their list"
        ready["/api/v1/pods"] = True
        _wait(lambda: len(sent) == 2)
        assert sent[1] == ["/api/v1/pods"]
    finally:
        stop.set()
        notifier.thread.join(5)


class PagedKube:
    """Just what a watcher's first list asks of the API server: pages of `items`, then a resource version."""

    def __init__(self, items: list[dict], page: int = 2):
        self.items, self.page = items, page

    def json(self, method: str, path: str, *, query: list, timeout: float) -> dict:
        params = dict(query)
        start = int(params.get("continue") or 0)
        end = start + min(int(params["limit"]), self.page)
        more = end < len(self.items)
        return {"metadata": {"resourceVersion": "42", **({"continue": str(end)} if more else {})},
                "items": self.items[start:end]}


def _pods(count: int) -> list[dict]:
    return [{"metadata": {"uid": f"u{i}", "name": f"p{i}", "managedFields": [{"manager": "kubectl"}]}}
            for i in range(count)]


def test_the_first_list_is_kept_whole_and_without_managed_fields():
    watcher = Watcher(PagedKube(_pods(5)), "/api/v1/pods", lambda path: None, threading.Event())
    watcher._list()
    assert watcher.state == watch.READY and watcher.resource_version == "42"
    sent = json.loads(watcher.list_text() or "")
    assert [item["metadata"]["name"] for item in sent["items"]] == [f"p{i}" for i in range(5)]
    assert sent["metadata"] == {"resourceVersion": "42"}
    assert not any("managedFields" in item["metadata"] for item in sent["items"])


def test_a_kind_too_large_to_keep_is_only_named(monkeypatch):
    monkeypatch.setattr(watch, "MAX_ITEMS", 3)
    watcher = Watcher(PagedKube(_pods(8)), "/api/v1/pods", lambda path: None, threading.Event())
    watcher._list()
    assert watcher.state == watch.TOO_BIG and watcher.list_text() is None and not watcher.items
    assert watcher.resource_version == "42", "its watch still runs: changes are named"


class Hub:
    def __init__(self):
        self.calls: list[tuple[str, str, dict]] = []

    def call(self, method: str, path: str, body: dict, **kwargs) -> dict:
        self.calls.append((method, path, body))
        return {"written": True, "queued": False, "pull": False}


def test_a_report_sends_the_lists_that_go_together_and_names_what_does_not_fit(monkeypatch):
    from fleetagent import agent as program

    agent = program.Agent(hub_url="http://127.0.0.1:1", kube=PagedKube([]), namespace="fleetweb-system")
    agent.hub = Hub()  # type: ignore[assignment]
    for path, count in (("/api/v1/pods", 3), ("/apis/apps/v1/replicasets", 2), ("/api/v1/nodes", 400)):
        watcher = Watcher(PagedKube(_pods(count), page=500), path, lambda p: None, agent.stop)
        watcher._list()
        agent.watchers[path] = watcher
    agent.send_with = {"/api/v1/pods": ["/apis/apps/v1/replicasets"]}
    monkeypatch.setattr(program, "PUSH_BYTES", len(agent.watchers["/api/v1/pods"].list_text() or "") +
                        len(agent.watchers["/apis/apps/v1/replicasets"].list_text() or "") + 10)
    agent._send_changes(["/api/v1/nodes", "/api/v1/pods"])
    (_method, path, body), = agent.hub.calls  # type: ignore[attr-defined]
    assert path == "changes"
    assert body["kinds"] == ["/api/v1/nodes", "/api/v1/pods", "/apis/apps/v1/replicasets"]
    assert sorted(body["lists"]) == ["/api/v1/pods", "/apis/apps/v1/replicasets"], "the nodes did not fit: named"
    assert agent.busy_until == 0.0, "the hub asks nothing: no quick polling"
