"""The agents' doors (/agent/v1/...): see agents.endpoints."""

from django.urls import path

from agents import endpoints

app_name = "agent_api"

urlpatterns = [
    path("register", endpoints.register, name="register"),
    path("registrations/<uuid:registration_id>", endpoints.registration, name="registration"),
    path("heartbeat", endpoints.heartbeat, name="heartbeat"),
    path("credential", endpoints.credential, name="credential"),
    path("changes", endpoints.changes, name="changes"),
    path("work", endpoints.work, name="work"),
    path("answers", endpoints.answers, name="answers"),
    path("manifest.yaml", endpoints.manifest, name="manifest"),
]
