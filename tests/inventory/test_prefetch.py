"""`port.prefetch`: pages in order, errors where they happened, bounded read-ahead, early stop stops the reader."""

import threading

import pytest

from inventory import port
from tests.conftest import wait_for


def test_pages_arrive_in_order_and_errors_after_them():
    def pages():
        yield b"1"
        yield b"2"
        raise port.ListRestarted("/api/v1/pods")

    got = []
    with pytest.raises(port.ListRestarted):
        for page in port.prefetch(pages()):
            got.append(page)
    assert got == [b"1", b"2"]


def test_read_ahead_is_bounded_and_stopping_early_stops_the_reader():
    produced = []
    finished = threading.Event()

    def pages():
        try:
            for i in range(1000):
                produced.append(i)
                yield str(i).encode()
        finally:
            finished.set()

    iterator = port.prefetch(pages(), depth=2)
    assert next(iterator) == b"0"
    # The reader fills the queue (2), reads one more and blocks on it: wait for that, not for a fixed time.
    wait_for(lambda: len(produced) >= 4, timeout=5, interval=0.01, what="the reader to fill its queue")
    assert len(produced) <= 4, "at most depth pages wait, plus one being read"
    iterator.close()
    assert len(produced) < 10
