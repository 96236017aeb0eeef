from rest_framework.routers import DefaultRouter

from inventory.api import people, views

router = DefaultRouter()
router.register("clusters", views.ClusterViewSet, basename="cluster")
router.register("nodes", views.NodeViewSet, basename="node")
router.register("node-pools", views.NodePoolViewSet, basename="nodepool")
router.register("addons", views.AddonViewSet, basename="addon")
router.register("namespaces", views.NamespaceViewSet, basename="namespace")
router.register("workloads", views.WorkloadViewSet, basename="workload")
router.register("problem-pods", views.ProblemPodViewSet, basename="problempod")
router.register("sync-runs", views.SyncRunViewSet, basename="syncrun")
router.register("groups", views.ClusterGroupViewSet, basename="group")
router.register("teams", views.TeamViewSet, basename="team")
router.register("users", people.UserViewSet, basename="user")

app_name = "api"
urlpatterns = router.urls
