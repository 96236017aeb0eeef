from django.urls import path

from inventory import views

app_name = "inventory"
urlpatterns = [
    path("", views.cluster_list, name="cluster_list"),
    path("export.csv", views.cluster_export, name="cluster_export"),
    path("attach/", views.cluster_attach, name="cluster_attach"),
    path("attach/test/", views.cluster_attach_test, name="cluster_attach_test"),
    path("attach/contexts/", views.cluster_attach_contexts, name="cluster_attach_contexts"),
    path("<slug:name>/", views.cluster_detail, name="cluster_detail"),
    path("<slug:name>/sync/", views.cluster_sync, name="cluster_sync"),
    path("<slug:name>/edit/", views.cluster_edit, name="cluster_edit"),
    path("<slug:name>/detach/", views.cluster_detach, name="cluster_detach"),
]
