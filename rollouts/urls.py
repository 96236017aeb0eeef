from django.urls import path

from rollouts import plan_views, views

app_name = "rollouts"
urlpatterns = [
    path("applications/", views.application_list, name="application_list"),
    path("applications/new/", views.application_create, name="application_create"),
    path("applications/<slug:name>/", views.application_detail, name="application_detail"),
    path("applications/<slug:name>/edit/", views.application_edit, name="application_edit"),
    path("applications/<slug:name>/delete/", views.application_delete, name="application_delete"),
    path("applications/<slug:name>/overrides/", views.override_edit, name="override_edit"),
    path("applications/<slug:name>/revisions/new/", views.revision_create, name="revision_create"),
    path("applications/<slug:name>/source/", views.source_edit, name="source_edit"),
    path("applications/<slug:name>/source/check/", views.source_check, name="source_check"),
    path("applications/<slug:name>/source/test/", views.source_test, name="source_test"),
    path("applications/<slug:name>/source/tests/<uuid:test_id>/", views.source_test_status, name="source_test_status"),
    path("applications/<slug:name>/source/webhook/", views.source_webhook_issue, name="source_webhook_issue"),
    path("source-credentials/", views.credential_list, name="credential_list"),
    path("source-credentials/<slug:name>/delete/", views.credential_delete, name="credential_delete"),
    path("hooks/sources/<str:hook_id>/", views.source_webhook, name="source_webhook"),
    path("applications/<slug:name>/revisions/<int:number>.yaml", views.revision_raw, name="revision_raw"),
    path("applications/<slug:name>/revisions/<int:number>/check/", views.revision_check, name="revision_check"),
    path("applications/<slug:name>/rollout/", views.rollout_create, name="rollout_create"),
    path("applications/<slug:name>/drift/<slug:cluster>/<str:action>/", views.drift_action, name="drift_action"),
    path("rollouts/", views.rollout_list, name="rollout_list"),
    path("rollouts/approvals/", views.my_approvals, name="my_approvals"),
    path("rollouts/stages/preview/", views.stage_preview, name="stage_preview"),
    path("rollouts/plans/", plan_views.plan_list, name="plan_list"),
    path("rollouts/plans/new/", plan_views.plan_create, name="plan_create"),
    path("rollouts/plans/<slug:name>/edit/", plan_views.plan_edit, name="plan_edit"),
    path("rollouts/plans/<slug:name>/delete/", plan_views.plan_delete, name="plan_delete"),
    path("rollouts/<int:pk>/", views.rollout_detail, name="rollout_detail"),
    path("rollouts/<int:pk>/stages/<int:index>/approve/", views.stage_approve, name="stage_approve"),
    path("rollouts/<int:pk>/stages/<int:index>/reject/", views.stage_reject, name="stage_reject"),
    path("rollouts/<int:pk>/<str:action>/", views.rollout_action, name="rollout_action"),
]
