"""Top-level URLs: pages of each app, the API under /api/v1/, the schema and its docs."""

from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from fleetweb import views
from foundation import metrics

urlpatterns = [
    path("", include("inventory.overview")),  # the fleet overview
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics.view, name="metrics"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", views.logout_view, name="logout"),
    path("", include("inventory.account_urls")),  # accounts/tokens/, accounts/service-accounts/
    path("", include("agents.urls")),  # clusters/register/, clusters/registrations/ (before clusters/<name>/)
    path("", include("inventory.urls")),  # clusters/, groups/
    path("agent/v1/", include("agents.agent_urls")),  # the agents' own doors
    path("", include("notifications.urls")),  # notifications/
    path("", include("governance.urls")),  # policies/, compliance/, audit/
    path("", include("rollouts.urls")),  # applications/, rollouts/
    path("api/v1/", include("inventory.api.urls")),
    path("api/v1/", include("agents.api")),
    path("api/v1/", include("notifications.api.urls")),
    path("api/v1/", include("governance.api.urls")),
    path("api/v1/", include("rollouts.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    # Both need a login; the split view serves Swagger UI's start-up script as a file (no inline script, for the CSP).
    path("api/docs/", login_required(SpectacularSwaggerSplitView.as_view(url_name="api_schema")), name="api_docs"),
    path("admin/", admin.site.urls),
]
