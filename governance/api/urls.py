from rest_framework.routers import SimpleRouter

from governance.api import views

router = SimpleRouter()
router.register("audit-events", views.AuditEventViewSet, basename="auditevent")

app_name = "governance-api"
urlpatterns = router.urls
