from django.urls import path

from inventory import group_views, sso_views, team_views, views

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
    path("node-pools/", views.node_pool_list, name="node_pool_list"),
    path("addons/", views.addon_matrix, name="addon_matrix"),
    path("workloads/export.csv", views.workload_export, name="workload_export"),
    path("groups/", group_views.group_list, name="group_list"),
    path("groups/new/", group_views.group_create, name="group_create"),
    path("groups/preview/", group_views.group_preview, name="group_preview"),
    path("groups/<slug:name>/", group_views.group_detail, name="group_detail"),
    path("groups/<slug:name>/edit/", group_views.group_edit, name="group_edit"),
    path("groups/<slug:name>/delete/", group_views.group_delete, name="group_delete"),
    path("teams/", team_views.team_list, name="team_list"),
    path("teams/sign-on/", sso_views.mapping_list, name="sso_mappings"),
    path("teams/sign-on/<int:pk>/delete/", sso_views.mapping_delete, name="sso_mapping_delete"),
    path("accounts/sso/login/", sso_views.sso_login, name="sso_login"),
    path("accounts/sso/callback/", sso_views.sso_callback, name="sso_callback"),
    path("teams/new/", team_views.team_create, name="team_create"),
    path("teams/preview/", team_views.team_preview, name="team_preview"),
    path("teams/<slug:name>/", team_views.team_detail, name="team_detail"),
    path("teams/<slug:name>/edit/", team_views.team_edit, name="team_edit"),
    path("teams/<slug:name>/delete/", team_views.team_delete, name="team_delete"),
    path("teams/<slug:name>/members/", team_views.team_member_add, name="team_member_add"),
    path("teams/<slug:name>/members/<int:pk>/remove/", team_views.team_member_remove, name="team_member_remove"),
]
