from django.urls import path

from governance import set_views, views

app_name = "governance"
urlpatterns = [
    path("audit/", views.audit_list, name="audit_list"),
    path("audit/export.csv", views.audit_export, name="audit_export"),
    path("policies/", views.policy_matrix, name="policy_matrix"),
    path("policies/catalog/", views.policy_catalog, name="policy_catalog"),
    path("policies/toggle/", views.policy_toggle, name="policy_toggle"),
    path("policies/sets/", set_views.policy_set_list, name="policy_set_list"),
    path("policies/sets/new/", set_views.policy_set_create, name="policy_set_create"),
    path("policies/sets/<slug:name>/", set_views.policy_set_detail, name="policy_set_detail"),
    path("policies/sets/<slug:name>/edit/", set_views.policy_set_edit, name="policy_set_edit"),
    path("policies/sets/<slug:name>/delete/", set_views.policy_set_delete, name="policy_set_delete"),
    path("policies/sets/<slug:name>/apply/", set_views.policy_set_apply, name="policy_set_apply"),
    path("policies/assign/", views.assignment_create, name="assignment_create"),
    path("policies/assignments/<int:pk>/", views.assignment_edit, name="assignment_edit"),
    path("policies/assignments/<int:pk>/delete/", views.assignment_delete, name="assignment_delete"),
    path("compliance/", views.compliance_overview, name="compliance"),
    path("compliance/violations/", views.violation_list, name="violation_list"),
    path("upgrades/", views.upgrade_plan, name="upgrade_plan"),
    path("upgrades/export.csv", views.upgrade_plan_export, name="upgrade_plan_export"),
    path("compliance/violations/export.csv", views.violation_export, name="violation_export"),
]
