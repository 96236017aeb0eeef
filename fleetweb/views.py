"""Login/logout and the health endpoint (the fleet overview is inventory's: inventory/overview.py)."""

from __future__ import annotations

from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.http import HttpResponseNotAllowed, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect

from foundation import health
from foundation.auth import sign_in_options


class LoginView(auth_views.LoginView):
    """Django's login; successes and failures reach the audit log through auth signals."""

    redirect_authenticated_user = True

    def get_context_data(self, **kwargs) -> dict:
        return {**super().get_context_data(**kwargs), **sign_in_options()}


def logout_view(request) -> HttpResponseBase:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    logout(request)
    return redirect("login")


def healthz(request) -> HttpResponseBase:
    """Liveness: the process answers. Asks nothing of the database or Redis, so their outage does not get every
    web process restarted (that is `/readyz`'s question)."""
    return JsonResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


def readyz(request) -> HttpResponseBase:
    """Readiness: database reachable and migrated, Redis reachable, beat ticked within 3 intervals; 503 with each
    failed check named otherwise."""
    ready, checks = health.readiness()
    return JsonResponse({"status": "ok" if ready else "fail", "checks": checks}, status=200 if ready else 503,
                        headers={"Cache-Control": "no-store"})
