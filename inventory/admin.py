"""Django admin for inventory: read-only. Credentials are never shown here.

Every change of a cluster goes through the pages, the API or a command, which call the services that check the
rules (enforced policies, the prod environment) and write the audit log; detaching goes through the service that
cleans up. The admin would bypass both, so it may only look.
"""

from django.contrib import admin

from inventory.models import Cluster, Namespace, Node, ProblemPod, SyncRun, Workload


class ReadOnlyAdmin(admin.ModelAdmin):
    """No add, change or delete: rows are written by the services and the collector only."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Cluster)
class ClusterAdmin(ReadOnlyAdmin):
    list_display = ("name", "environment", "region", "provider", "kubernetes_version", "status", "node_count",
                    "last_sync_at")
    list_filter = ("environment", "status", "provider")
    search_fields = ("name", "region", "owner", "server")


class _ReadOnlyAdmin(ReadOnlyAdmin):
    list_select_related = ("cluster",)


@admin.register(Node)
class NodeAdmin(_ReadOnlyAdmin):
    list_display = ("name", "cluster", "ready", "kubelet_version", "zone", "instance_type")
    list_filter = ("ready",)
    search_fields = ("name", "cluster__name")


@admin.register(Namespace)
class NamespaceAdmin(_ReadOnlyAdmin):
    list_display = ("name", "cluster", "phase", "pod_security_enforce", "pods_total")
    search_fields = ("name", "cluster__name")


@admin.register(Workload)
class WorkloadAdmin(_ReadOnlyAdmin):
    list_display = ("name", "kind", "namespace", "cluster", "replicas_desired", "replicas_available")
    list_filter = ("kind",)
    search_fields = ("name", "namespace", "cluster__name")


@admin.register(ProblemPod)
class ProblemPodAdmin(_ReadOnlyAdmin):
    list_display = ("name", "namespace", "cluster", "phase", "reason", "restarts")
    search_fields = ("name", "namespace", "cluster__name", "reason")


@admin.register(SyncRun)
class SyncRunAdmin(_ReadOnlyAdmin):
    list_display = ("cluster", "started_at", "outcome", "duration_ms", "bytes_read")
    list_filter = ("outcome",)
