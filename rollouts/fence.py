"""One engine per rollout: a run holds the rollout's lease under a random token (the fence), and every state write
of that run happens inside `Fence.hold`, which locks the rollout row, checks the token and the state the step
started from, and renews the lease (rollouts/engine.py says why)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import transaction

from foundation import leases
from rollouts.models import Rollout


def _lease() -> timedelta:
    return timedelta(seconds=settings.FLEETWEB_ROLLOUT_LEASE)


class LeaseLost(Exception):
    """This run no longer owns the rollout (another run took the lease) or its state moved on without it."""


class Fence:
    """The token of one engine run; every write of that run goes through `hold`."""

    def __init__(self, rollout_id: int, token: str):
        self.rollout_id, self.token = rollout_id, token
        self.expected: str | None = None  # the rollout state the current step started from

    def renew(self) -> None:
        """Extend the lease; raise LeaseLost when another run holds it now."""
        if not leases.renew(Rollout, self.rollout_id, self.token, _lease()):
            raise LeaseLost(f"rollout #{self.rollout_id}: the lease was taken over")

    @contextmanager
    def hold(self) -> Iterator[None]:
        """A transaction in which this run may write: the rollout row is locked (actions and decisions lock it
        too, so they wait or we do), still leased to us and still in the state the step started from."""
        with transaction.atomic():
            state = (Rollout.objects.select_for_update().filter(pk=self.rollout_id, lease_token=self.token)
                     .values_list("state", flat=True).first())
            if state is None:
                raise LeaseLost(f"rollout #{self.rollout_id}: the lease was taken over")
            if self.expected is not None and state != self.expected:
                raise LeaseLost(f"rollout #{self.rollout_id} is {state} now, not {self.expected}")
            leases.renew(Rollout, self.rollout_id, self.token, _lease())
            yield


def acquire(rollout_id: int) -> Fence | None:
    """Take the lease when nobody holds it (or it expired); None when another run holds it."""
    token = leases.acquire(Rollout, rollout_id, _lease())
    return Fence(rollout_id, token) if token else None


def release(fence: Fence) -> None:
    leases.release(Rollout, fence.rollout_id, fence.token)
