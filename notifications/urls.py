from django.urls import path

from notifications import views

app_name = "notifications"
urlpatterns = [
    path("notifications/", views.notification_list, name="notifications"),
    path("notifications/channels/new/", views.channel_create, name="channel_create"),
    path("notifications/channels/<int:pk>/", views.channel_detail, name="channel_detail"),
    path("notifications/channels/<int:pk>/test/", views.channel_test, name="channel_test"),
    path("notifications/channels/<int:pk>/delete/", views.channel_delete, name="channel_delete"),
    path("notifications/rules/new/", views.rule_create, name="rule_create"),
    path("notifications/rules/<int:pk>/", views.rule_edit, name="rule_edit"),
    path("notifications/rules/<int:pk>/delete/", views.rule_delete, name="rule_delete"),
    path("notifications/deliveries/", views.delivery_list, name="delivery_list"),
    path("notifications/deliveries/<int:pk>/", views.delivery_detail, name="delivery_detail"),
]
