"""`python -m benchmarks.watchdog`: what the total deadline of every call to a member costs (entering and leaving
`foundation.outbound.deadline`, which registers the call with the watchdog thread), against the same loop without it.
Medians of 7 runs of 20,000 calls, in one process; nothing is dialled, no database or Redis is needed."""

from __future__ import annotations

import os
import statistics
import time

CALLS, RUNS = 20_000, 7


def _loop(watched: bool) -> float:
    from foundation import outbound

    started = time.perf_counter()
    for _ in range(CALLS):
        if watched:
            with outbound.deadline(time.monotonic() + 35):
                pass
        else:
            time.monotonic()
    return (time.perf_counter() - started) / CALLS * 1e6


def main() -> None:
    # The type-check settings point at no server: importing them starts nothing.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleetweb.settings_typecheck")
    base = statistics.median(_loop(False) for _ in range(RUNS))
    watched = statistics.median(_loop(True) for _ in range(RUNS))
    print(f"per call to a member: {base:.2f} us without the deadline watch, {watched:.2f} us with it "
          f"(+{watched - base:.2f} us; median of {RUNS} x {CALLS:,})")


if __name__ == "__main__":
    main()
