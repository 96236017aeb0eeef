"""`make test`: the whole suite, with the first build of the member binaries overlapped by the unit tests.

On a fresh machine the Go builds of the member clusters' binaries take most of the time (about 26 minutes on 2
cores) and the unit tests (no member, no browser) about 5 more; the unit tests need no binary, so they run while the
binaries build, and the end-to-end and browser tests run once the build is done. With binaries cached the build is
instant and this is the plain suite. Given pytest arguments (`make test PYTEST_ARGS=...`), it builds and then runs
pytest once with them, as before.

Ctrl-C, TERM and a failure stop the build and the tests it started; the exit code is non-zero if either part
failed, and the last line adds up both parts ("suite: N passed, N failed").
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

UNIT = "not e2e and not browser"
REST = "e2e or browser"
_COUNTS = re.compile(r"(\d+) (passed|failed|errors?|skipped)")


_running: list[subprocess.Popen] = []  # what a Ctrl-C or TERM must stop


def _run_pytest(args: list[str], totals: dict[str, int]) -> int:
    """Run one pytest session, its output passed through; add its counts from the summary line to `totals`."""
    color = ["--color=yes"] if sys.stdout.isatty() else []
    proc = subprocess.Popen([sys.executable, "-m", "pytest", *color, *args], stdout=subprocess.PIPE, text=True,
                            bufsize=1)
    _running.append(proc)
    assert proc.stdout is not None
    last = ""
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if line.strip():
            last = line
    code = proc.wait()
    _running.remove(proc)
    for number, word in _COUNTS.findall(re.sub(r"\x1b\[[0-9;]*m", "", last)):
        key = "failed" if word.startswith("error") else word
        totals[key] = totals.get(key, 0) + int(number)
    return code


def _stop(proc: subprocess.Popen | None, *, group: bool = False) -> None:
    """Stop a child: the build's whole process group (it runs `go build`), or a pytest session with SIGINT, as
    Ctrl-C would (it then stops the members and servers it started); SIGKILL when it does not end in time."""
    if proc is None or proc.poll() is not None:
        return
    if group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait()


def main(argv: list[str]) -> int:
    build_cmd = [sys.executable, "-m", "localfleet", "build", "--for-tests"]
    if argv:  # the caller chose what to run: build first, then exactly that
        built = subprocess.call(build_cmd)
        if built != 0:
            return built
        return subprocess.call([sys.executable, "-m", "pytest", *argv])

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    build = None
    totals: dict[str, int] = {}
    try:
        # The build prints its progress on stderr, between the unit tests' lines on stdout.
        build = subprocess.Popen(build_cmd, stdout=sys.stderr, start_new_session=True)
        unit = _run_pytest(["-m", UNIT], totals)
        print("suite: the unit tests are done; waiting for the member binaries' build", file=sys.stderr, flush=True)
        built = build.wait()
        if built != 0:
            print(f"suite: the build of the member binaries failed ({built}); end-to-end and browser tests not run",
                  file=sys.stderr)
            rest = built
        else:
            rest = _run_pytest(["-m", REST], totals)
    except KeyboardInterrupt:
        print("\nsuite: stopped", file=sys.stderr)
        return 130
    finally:
        _stop(build, group=True)
        for proc in list(_running):
            _stop(proc)
    print(f"suite: {totals.get('passed', 0)} passed, {totals.get('failed', 0)} failed"
          + (f", {totals['skipped']} skipped" if totals.get("skipped") else ""), flush=True)
    return combined_exit(unit, rest)


def combined_exit(*codes: int) -> int:
    """One exit code for both parts: the first failure's; pytest's 5 (that part had no test) counts only when no
    part ran any."""
    ran = [c for c in codes if c != 5]
    return next((c for c in ran if c != 0), 0) if ran else 5


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
