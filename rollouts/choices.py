"""Choices of the rollouts app: the states of rollouts, stages and per-cluster targets."""

from django.db import models


class RolloutState(models.TextChoices):
    PENDING = "pending", "pending"
    RUNNING = "running", "running"
    PAUSED = "paused", "paused"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    ABORTED = "aborted", "aborted"
    ROLLING_BACK = "rolling_back", "rolling back"
    ROLLED_BACK = "rolled_back", "rolled back"


ACTIVE_ROLLOUT_STATES = (RolloutState.PENDING, RolloutState.RUNNING, RolloutState.ROLLING_BACK)
FINISHED_ROLLOUT_STATES = (RolloutState.SUCCEEDED, RolloutState.FAILED, RolloutState.ABORTED, RolloutState.ROLLED_BACK)


class StageState(models.TextChoices):
    PENDING = "pending", "pending"
    AWAITING_APPROVAL = "awaiting_approval", "awaiting approval"
    APPLYING = "applying", "applying"
    VERIFYING = "verifying", "verifying"
    SOAKING = "soaking", "soaking"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    REJECTED = "rejected", "rejected"
    ABORTED = "aborted", "aborted"


class TargetState(models.TextChoices):
    PENDING = "pending", "pending"
    APPLYING = "applying", "applying"
    VERIFYING = "verifying", "verifying"
    READY = "ready", "ready"
    FAILED = "failed", "failed"
    SKIPPED = "skipped", "skipped"  # left the owner team's scope, or became prod under a stage without approval
    ROLLING_BACK = "rolling_back", "rolling back"
    ROLLBACK_VERIFYING = "rollback_verifying", "verifying rollback"
    ROLLED_BACK = "rolled_back", "rolled back"
    ROLLBACK_FAILED = "rollback_failed", "rollback failed"


class Decision(models.TextChoices):
    APPROVE = "approve", "approved"
    REJECT = "reject", "rejected"


class DriftState(models.TextChoices):
    """Whether what Fleetweb applied to a cluster is still what the cluster runs (`rollouts.drift`)."""

    UNCHECKED = "unchecked", "not checked yet"
    IN_SYNC = "in_sync", "in sync"
    DRIFTED = "drifted", "drifted"
    MISSING = "missing", "missing"
    UNKNOWN = "unknown", "could not check"
