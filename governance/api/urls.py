from django.urls import path
from rest_framework.routers import SimpleRouter

from governance.api import policysets, views

router = SimpleRouter()
router.register("audit-events", views.AuditEventViewSet, basename="auditevent")
router.register("policies", views.PolicyViewSet, basename="policy")
router.register("policy-sets", policysets.PolicySetViewSet, basename="policyset")
router.register("policy-assignments", views.PolicyAssignmentViewSet, basename="policyassignment")
router.register("violations", views.ViolationViewSet, basename="violation")
router.register("compliance/clusters", views.ClusterComplianceViewSet, basename="clustercompliance")
router.register("upgrade-plan", views.UpgradePlanViewSet, basename="upgradeplan")

app_name = "governance-api"
urlpatterns = [
    path("compliance/", views.ComplianceView.as_view(), name="compliance"),
    *router.urls,
]
