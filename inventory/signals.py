"""Signals the inventory app sends; governance listens so inventory never imports it."""

from django.dispatch import Signal

# Sent after the change is committed-to-be (receivers use transaction.on_commit):
# cluster_ids: the clusters whose inventory, fields or group membership may have changed;
# reason: "sync", "update", "group".
clusters_changed = Signal()
