"""Seeing changes in seconds: one watch per collected kind (paths the hub names in its heartbeat answer), with
bookmarks, started again from where it was (or, after a 410, from a fresh list's resource version); any change marks
the kind changed, and the notifier tells the hub at most once per `min_interval` seconds (at once for the first
change, then what gathered meanwhile). The hub answers by syncing the cluster through the agent."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from fleetagent.kube import CallError, Kube, watch_events

log = logging.getLogger("fleetagent.watch")


class Watcher(threading.Thread):
    def __init__(self, kube: Kube, path: str, changed: Callable[[str], None], stop: threading.Event):
        super().__init__(name=f"watch {path}", daemon=True)
        self.kube, self.path, self.changed, self.stop = kube, path, changed, stop
        self.resource_version = ""
        self.restarts = 0  # lists after a 410 (or a first start)
        self.resumed = 0  # watches started again from the last resource version

    def _list_version(self) -> str:
        answer = self.kube.json("GET", self.path, query=[("limit", "1")], timeout=30)
        return str(answer.get("metadata", {}).get("resourceVersion", ""))

    def run(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                if not self.resource_version:
                    self.resource_version = self._list_version()
                    self.restarts += 1
                else:
                    self.resumed += 1
                for event in watch_events(self.kube, self.path, self.resource_version):
                    if self.stop.is_set():
                        return
                    kind = event.get("type")
                    obj = event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:  # too old: list again, and say the kind changed (events were lost)
                            self.resource_version = ""
                            self.changed(self.path)
                        break
                    version = (obj.get("metadata") or {}).get("resourceVersion")
                    if version:
                        self.resource_version = str(version)
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self.changed(self.path)
                failures = 0
            except (CallError, ValueError) as exc:
                failures += 1
                log.warning("watch %s: %s", self.path, exc)
                self.stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))


class Notifier:
    """Gathers changed kinds and hands them to `send` at most once per `min_interval` seconds."""

    def __init__(self, send: Callable[[list[str]], None], stop: threading.Event, *, min_interval: float = 1.0):
        self.send, self.stop, self.min_interval = send, stop, min_interval
        self.pending: set[str] = set()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="notifier", daemon=True)

    def changed(self, path: str) -> None:
        with self.lock:
            self.pending.add(path)
        self.wake.set()

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.wake.wait(timeout=1.0)
            if self.stop.is_set():
                return
            with self.lock:
                kinds, self.pending = sorted(self.pending), set()
                self.wake.clear()
            if not kinds:
                continue
            started = time.monotonic()
            try:
                self.send(kinds)
            except Exception as exc:  # the hub is away: keep the kinds for the next try
                log.warning("could not tell the hub of changes: %s", exc)
                with self.lock:
                    self.pending.update(kinds)
                self.wake.set()
                self.stop.wait(2.0)
                continue
            self.stop.wait(max(0.0, self.min_interval - (time.monotonic() - started)))
