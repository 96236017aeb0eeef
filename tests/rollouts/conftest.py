"""Fixtures of the rollout tests."""

from __future__ import annotations

import pytest

from tests.builders import make_cluster
from tests.rollouts.fakes import FakeFleet


@pytest.fixture
def fleet(monkeypatch):
    fake = FakeFleet().install(monkeypatch)
    for name in ("a-1", "a-2", "a-3", "b-1"):
        make_cluster(name, labels={"ring": name[0]})
    return fake
