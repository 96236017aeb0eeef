"""A chart version or range resolves to one exact version, as Helm resolves it."""

from __future__ import annotations

import pytest

from rollouts.sources.charts import pick
from rollouts.sources.tree import SourceError

VERSIONS = ["1.0.0", "1.2.0", "1.2.5", "1.10.1", "2.0.0-rc.1", "2.0.0", "2.1.3", "4.2.1", "4.3.0", "0.3.1", "0.3.4"]


@pytest.mark.parametrize(("wanted", "expected"), [
    ("4.2.1", "4.2.1"), ("^1.2", "1.10.1"), ("~1.2", "1.2.5"), ("1.2.x", "1.2.5"), ("1.x", "1.10.1"),
    (">=1.0.0 <2.0.0", "1.10.1"), (">=1.0.0, <2.0.0", "1.10.1"), ("^0.3", "0.3.4"), ("*", "4.3.0"), ("", "4.3.0"),
    ("^2.0.0-rc.0", "2.1.3"), ("<2.0.0 || ^4.2", "4.3.0"), ("~4.2.0", "4.2.1"), ("2", "2.1.3"),
])
def test_a_range_picks_the_newest_version_in_it(wanted, expected):
    assert pick(VERSIONS, wanted) == expected


def test_a_prerelease_only_when_the_range_names_one():
    assert pick(["1.0.0", "2.0.0-rc.1"], ">=1.0.0") == "1.0.0"
    assert pick(["1.0.0", "2.0.0-rc.1"], ">=2.0.0-rc.0") == "2.0.0-rc.1"


@pytest.mark.parametrize("wanted", ["^9", "banana", ">=5.0.0"])
def test_nothing_matching_is_a_clear_error(wanted):
    with pytest.raises(SourceError, match="not a version|no version of the chart matches"):
        pick(VERSIONS, wanted)
