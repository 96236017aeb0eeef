from rest_framework.routers import SimpleRouter

from rollouts.api import views

router = SimpleRouter()
router.register("applications", views.ApplicationViewSet, basename="application")
router.register("rollout-plans", views.RolloutPlanViewSet, basename="rolloutplan")
router.register("rollouts", views.RolloutViewSet, basename="rollout")
router.register("drift", views.DriftViewSet, basename="drift")
router.register("namespace-holds", views.NamespaceHoldViewSet, basename="namespacehold")
router.register("receipt-key", views.ReceiptKeyViewSet, basename="receiptkey")
router.register("change-windows", views.ChangeWindowViewSet, basename="changewindow")
router.register("source-credentials", views.SourceCredentialViewSet, basename="sourcecredential")

app_name = "rollouts-api"
urlpatterns = router.urls
