"""Seeing changes in seconds: one watch per collected kind (paths the hub names in its heartbeat answer), each keeping
the kind's whole list in memory (a watch cache, as an informer does: listed once, then kept by the watch's events,
with bookmarks, started again from where it was, or after a 410 from a fresh list). Any change marks the kind changed;
the notifier tells the hub at most once per `min_interval` seconds (at once for the first change, then what gathered
meanwhile), sending each changed kind's whole list, so the hub writes it without asking the cluster again. A kind
too large to keep (more than MAX_ITEMS objects or MAX_BYTES of JSON) is only named: the hub reads it through the
agent's work items."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from fleetagent.kube import CallError, Kube, watch_events

log = logging.getLogger("fleetagent.watch")

MAX_ITEMS = 20_000  # objects of one kind kept in memory
MAX_BYTES = 16 * 2**20  # of one kind's JSON (about; managedFields are not kept)
PAGE = 500
STARTING, READY, TOO_BIG, FAILING = "starting", "ready", "too big", "failing"


def _size(obj: dict) -> int:
    return len(json.dumps(obj, separators=(",", ":")))


def _trimmed(obj: dict) -> dict:
    """What the hub reads of an object: all but metadata.managedFields (often half an object's bytes)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return obj


class Watcher(threading.Thread):
    def __init__(self, kube: Kube, path: str, changed: Callable[[str], None], stop: threading.Event):
        super().__init__(name=f"watch {path}", daemon=True)
        self.kube, self.path, self.changed, self.stop = kube, path, changed, stop
        self.resource_version = ""
        self.restarts = 0  # lists after a 410 (or a first start)
        self.resumed = 0  # watches started again from the last resource version
        self.lock = threading.Lock()
        self.items: dict[str, dict] = {}  # uid -> object, while the kind is READY
        self.sizes: dict[str, int] = {}
        self.bytes = 0
        self.state = STARTING

    # -- the cache ------------------------------------------------------------------------------

    def _put(self, obj: dict) -> None:
        uid = str((obj.get("metadata") or {}).get("uid", ""))
        if not uid:
            return
        obj = _trimmed(obj)
        size = _size(obj)
        self.bytes += size - self.sizes.get(uid, 0)
        self.items[uid], self.sizes[uid] = obj, size

    def _drop(self, obj: dict) -> None:
        uid = str((obj.get("metadata") or {}).get("uid", ""))
        self.items.pop(uid, None)
        self.bytes -= self.sizes.pop(uid, 0)

    def _check_size(self) -> None:
        if len(self.items) > MAX_ITEMS or self.bytes > MAX_BYTES:
            self.items, self.sizes, self.bytes, self.state = {}, {}, 0, TOO_BIG

    def list_text(self) -> str | None:
        """The kind's whole list as the API server would answer it (one page), or None when it is not kept."""
        with self.lock:
            if self.state != READY:
                return None
            items = list(self.items.values())
            version = self.resource_version
        return json.dumps({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": version},
                           "items": items}, separators=(",", ":"))

    def _list(self) -> None:
        """List the kind whole (paged), keeping it unless it is too large; its resource version either way."""
        items: dict[str, dict] = {}
        sizes: dict[str, int] = {}
        total, keep, token, version = 0, True, "", ""
        while True:
            query: list = [("limit", PAGE)] + ([("continue", token)] if token else [])
            page = self.kube.json("GET", self.path, query=query, timeout=60)
            meta = page.get("metadata") or {}
            version = str(meta.get("resourceVersion", ""))
            for obj in page.get("items") or []:
                if not keep:
                    break
                uid = str((obj.get("metadata") or {}).get("uid", ""))
                obj = _trimmed(obj)
                sizes[uid] = _size(obj)
                items[uid] = obj
                total += sizes[uid]
                keep = len(items) <= MAX_ITEMS and total <= MAX_BYTES
            token = str(meta.get("continue") or "")
            if not token or not keep:
                break
        if not keep and token:  # too large to keep: only its resource version is needed, from the first page
            version = str(self.kube.json("GET", self.path, query=[("limit", "1")], timeout=30)
                          .get("metadata", {}).get("resourceVersion", ""))
        with self.lock:
            self.resource_version = version
            if keep:
                self.items, self.sizes, self.bytes, self.state = items, sizes, total, READY
            else:
                self.items, self.sizes, self.bytes, self.state = {}, {}, 0, TOO_BIG

    # -- the watch ------------------------------------------------------------------------------

    def run(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                if not self.resource_version:
                    self._list()
                    self.restarts += 1
                    self.changed(self.path)  # what the hub has may be older than this list
                else:
                    self.resumed += 1
                for event in watch_events(self.kube, self.path, self.resource_version):
                    if self.stop.is_set():
                        return
                    kind = event.get("type")
                    obj = event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:  # too old: list again (the list says the kind changed)
                            self.resource_version = ""
                        break
                    with self.lock:
                        version = (obj.get("metadata") or {}).get("resourceVersion")
                        if version:
                            self.resource_version = str(version)
                        if self.state == READY and kind in ("ADDED", "MODIFIED"):
                            self._put(obj)
                            self._check_size()
                        elif self.state == READY and kind == "DELETED":
                            self._drop(obj)
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self.changed(self.path)
                failures = 0
            except (CallError, ValueError) as exc:
                failures += 1
                with self.lock:
                    if self.state == STARTING:
                        self.state = FAILING  # named without a list: the hub reads it and sees why it fails
                log.warning("watch %s: %s", self.path, exc)
                self.changed(self.path)
                self.stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))


class Notifier:
    """Gathers changed kinds and hands them to `send` at most once per `min_interval` seconds. A kind whose watch is
    still making its first list waits for it (the list marks it changed again), so the hub gets the list, not a
    request to read the kind."""

    def __init__(self, send: Callable[[list[str]], None], stop: threading.Event, *, min_interval: float = 1.0,
                 ready: Callable[[str], bool] = lambda path: True):
        self.send, self.stop, self.min_interval, self.ready = send, stop, min_interval, ready
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
                kinds = sorted(path for path in self.pending if self.ready(path))
                self.pending.difference_update(kinds)
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
