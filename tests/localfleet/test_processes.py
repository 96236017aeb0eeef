"""Member processes are found again only by their recorded pid and start time, never by name."""

from __future__ import annotations

import subprocess
import sys

from localfleet.member import Member, _alive
from localfleet.procs import start_time


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)


def test_recorded_process_is_stopped_and_forgotten(tmp_path):
    proc = sleeper()
    member = Member(name="m", state_dir=tmp_path)
    member.pids["etcd"] = [proc.pid, start_time(proc.pid)]
    member.save()
    reloaded = Member.load(tmp_path, "m")
    assert reloaded.is_running("etcd")
    reloaded.stop_component("etcd")
    assert proc.wait(10) is not None
    assert "etcd" not in Member.load(tmp_path, "m").pids


def test_a_recycled_pid_is_never_killed(tmp_path):
    """Same pid, different start time: another program now owns it, and it is left alone."""
    proc = sleeper()
    try:
        member = Member(name="m", state_dir=tmp_path)
        member.pids["etcd"] = [proc.pid, "1"]  # recorded start time of an older process
        assert not member.is_running("etcd")
        member.stop_component("etcd")
        assert proc.poll() is None and _alive(proc.pid, None)
    finally:
        proc.kill()
        proc.wait()


def test_a_crashed_runs_leftovers_are_stopped_before_the_next_start(tmp_path):
    from localfleet.fleet import Fleet

    leftover = sleeper()
    member = Member(name="m", state_dir=tmp_path)
    member.ports = {"etcd": 1, "etcd_peer": 2, "apiserver": 3}  # nothing answers: the member is not healthy
    member.pids["kube-apiserver"] = [leftover.pid, start_time(leftover.pid)]
    member.save()
    Fleet(tmp_path)._stop_stale(Member.load(tmp_path, "m"))
    assert leftover.wait(10) is not None
