"""Rollouts listen to inventory: a cluster that changed fields, labels or groups may now receive other objects."""

from django.dispatch import receiver

from inventory.signals import clusters_changed
from rollouts.rendering import refresh_pending


@receiver(clusters_changed)
def revoid_changed_targets(sender, cluster_ids, reason, **kwargs) -> None:
    """Re-render the stages not yet started that reach these clusters, in the same transaction: an approval of
    objects a cluster would no longer receive is void at once, and the page says why."""
    if reason == "sync":
        return  # a sync changes inventory rows, never a cluster's fields, labels or groups

    refresh_pending(cluster_ids=cluster_ids, reason={"update": "a cluster's fields or labels changed",
                                                     "group": "a group's members changed"}.get(reason, reason))
