"""Django admin for inventory: metadata only. Credentials are never shown or edited here."""

from django.contrib import admin

from inventory.models import Cluster, Namespace, Node, ProblemPod, SyncRun, Workload


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ("name", "environment", "region", "provider", "kubernetes_version", "status", "node_count",
                    "last_sync_at")
    list_filter = ("environment", "status", "provider")
    search_fields = ("name", "region", "owner", "server")
    # Changes of these go through the pages or the API, which audit them and check the rules.
    readonly_fields = [f.name for f in Cluster._meta.fields if f.name not in ("owner", "cost_center")]


class _ReadOnlyAdmin(admin.ModelAdmin):
    """Inventory rows are written by the collector only."""

    list_select_related = ("cluster",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


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
