"""The agent's change notifier: the first change goes at once, later ones gather and go at most once per interval,
and kinds it could not deliver are kept for the next try."""

from __future__ import annotations

import threading
import time

from fleetagent.watch import Notifier


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
