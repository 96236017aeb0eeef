from rest_framework.routers import DefaultRouter

from notifications.api import views

router = DefaultRouter()
router.register("notification-channels", views.ChannelViewSet, basename="channel")
router.register("alert-rules", views.AlertRuleViewSet, basename="alertrule")
router.register("notification-deliveries", views.DeliveryViewSet, basename="delivery")

app_name = "notifications-api"
urlpatterns = router.urls
