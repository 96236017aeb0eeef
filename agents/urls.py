"""Pages: register a cluster (a bootstrap token and its manifest), the registrations waiting for a decision."""

from django.urls import path

from agents import views

app_name = "agents"

urlpatterns = [
    path("clusters/register/", views.register, name="register"),
    path("clusters/registrations/", views.registrations, name="registrations"),
    path("clusters/registrations/<uuid:registration_id>/decide", views.decide, name="decide"),
    path("clusters/registrations/tokens/<int:token_id>/revoke", views.revoke_token, name="revoke_token"),
    path("clusters/<slug:name>/agent/revoke", views.revoke_agent, name="revoke_agent"),
]
