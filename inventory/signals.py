"""Signals the inventory app sends; governance listens so inventory never imports it."""

from django.dispatch import Signal

# Sent after the change is committed-to-be (receivers use transaction.on_commit):
# cluster_ids: the clusters whose inventory, fields or group membership may have changed;
# reason: "sync", "update", "group".
clusters_changed = Signal()


# Guards another app registers to refuse a change of clusters' fields or group membership before it commits
# (governance: a non-admin may not remove or weaken an enforced policy). Each guard is an object with
# `snapshot(cluster_ids) -> state`, taken before the change, and `refusal(state, cluster_ids, user) -> str | None`,
# asked after the change was written in the same transaction; a message rolls the change back.
membership_guards: list = []
