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


def _pages_reading_where(read_by: list[str], count: int):
    for i in range(count):
        read_by.append(threading.current_thread().name)
        yield str(i).encode()


def test_a_list_of_one_page_is_read_in_the_callers_thread_without_a_reader():
    read_by: list[str] = []
    before = threading.active_count()
    got = list(port.prefetch(_pages_reading_where(read_by, 1), more=lambda page: False))
    assert got == [b"0"]
    assert read_by == [threading.current_thread().name]
    assert threading.active_count() == before


def test_a_list_that_continues_reads_its_first_page_here_and_the_rest_ahead_in_a_reader():
    read_by: list[str] = []
    got = list(port.prefetch(_pages_reading_where(read_by, 4), more=lambda page: page == b"0"))
    assert got == [b"0", b"1", b"2", b"3"]
    assert read_by == [threading.current_thread().name] + ["kube-prefetch"] * 3


def test_a_wrong_guess_that_no_page_follows_still_reads_every_page_in_order():
    read_by: list[str] = []
    got = list(port.prefetch(_pages_reading_where(read_by, 3), more=lambda page: False))
    assert got == [b"0", b"1", b"2"]
    assert set(read_by) == {threading.current_thread().name}


def test_the_first_pages_error_is_raised_in_the_callers_thread():
    def failing():
        raise port.ListRestarted("/api/v1/pods")
        yield b""  # pragma: no cover

    with pytest.raises(port.ListRestarted):
        list(port.prefetch(failing(), more=lambda page: True))
