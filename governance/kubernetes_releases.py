"""Upstream Kubernetes minor releases and their end-of-life dates (kubernetes.io/releases).

Shipped with Fleetweb and updated with it; a minor newer than the newest row is taken as supported
(this table predates it), one older than the oldest row as long out of support. The API versions each release
stops serving are `governance.api_removals`, generated from upstream's code.
"""

from __future__ import annotations

import datetime
import re

END_OF_LIFE: dict[tuple[int, int], datetime.date] = {
    (1, 20): datetime.date(2022, 2, 28),
    (1, 21): datetime.date(2022, 6, 28),
    (1, 22): datetime.date(2022, 10, 28),
    (1, 23): datetime.date(2023, 2, 28),
    (1, 24): datetime.date(2023, 7, 28),
    (1, 25): datetime.date(2023, 10, 28),
    (1, 26): datetime.date(2024, 2, 28),
    (1, 27): datetime.date(2024, 6, 28),
    (1, 28): datetime.date(2024, 10, 28),
    (1, 29): datetime.date(2025, 2, 28),
    (1, 30): datetime.date(2025, 6, 28),
    (1, 31): datetime.date(2025, 10, 28),
    (1, 32): datetime.date(2026, 2, 28),
    (1, 33): datetime.date(2026, 6, 28),
    (1, 34): datetime.date(2026, 10, 27),
    (1, 35): datetime.date(2027, 2, 28),
    (1, 36): datetime.date(2027, 6, 28),
    (1, 37): datetime.date(2027, 10, 28),
}
OLDEST = min(END_OF_LIFE)

_VERSION = re.compile(r"^v?(\d+)\.(\d+)")


def minor_of(version: str) -> tuple[int, int] | None:
    """(1, 35) of 'v1.35.4', 'v1.35.4-eks-1234', '1.35'; None when it is not a version."""
    m = _VERSION.match(version.strip()) if version else None
    return (int(m.group(1)), int(m.group(2))) if m else None


def end_of_life(minor: tuple[int, int]) -> datetime.date | None:
    """The EOL date, None for a minor newer than the table, date.min for one older than it."""
    if minor in END_OF_LIFE:
        return END_OF_LIFE[minor]
    if minor < OLDEST:
        return datetime.date.min
    return None
