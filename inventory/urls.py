from django.urls import path

from inventory import views

app_name = "inventory"
urlpatterns = [
    path("clusters/", views.cluster_list, name="cluster_list"),
    path("clusters/export.csv", views.cluster_export, name="cluster_export"),
    path("clusters/attach/", views.cluster_attach, name="cluster_attach"),
    path("clusters/attach/test/", views.cluster_attach_test, name="cluster_attach_test"),
    path("clusters/attach/test/<uuid:draft_id>/", views.cluster_attach_test_result, name="cluster_attach_test_result"),
    path("clusters/attach/contexts/", views.cluster_attach_contexts, name="cluster_attach_contexts"),
    path("clusters/<slug:name>/", views.cluster_detail, name="cluster_detail"),
    path("clusters/<slug:name>/sync/", views.cluster_sync, name="cluster_sync"),
    path("clusters/<slug:name>/edit/", views.cluster_edit, name="cluster_edit"),
    path("clusters/<slug:name>/detach/", views.cluster_detach, name="cluster_detach"),
    path("workloads/", views.workload_list, name="workload_list"),
    path("workloads/export.csv", views.workload_export, name="workload_export"),
    path("groups/", views.group_list, name="group_list"),
    path("groups/new/", views.group_create, name="group_create"),
    path("groups/preview/", views.group_preview, name="group_preview"),
    path("groups/<slug:name>/", views.group_detail, name="group_detail"),
    path("groups/<slug:name>/edit/", views.group_edit, name="group_edit"),
    path("groups/<slug:name>/delete/", views.group_delete, name="group_delete"),
]
