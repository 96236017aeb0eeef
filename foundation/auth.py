"""Password sign-in, switchable off (FLEETWEB_LOCAL_LOGIN=false) except for the break-glass admin; accounts that
sign in through the identity provider or are service accounts never sign in with a password."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.http import HttpRequest

from foundation.roles import ADMIN, has_role


class PasswordBackend(ModelBackend):
    def authenticate(self, request, **kwargs) -> User | None:  # type: ignore[override]  # Django's own is untyped
        user = super().authenticate(request, **kwargs)
        if user is None:
            return None
        if hasattr(user, "service_account"):
            return None
        if not settings.FLEETWEB_LOCAL_LOGIN:
            if user.get_username() != settings.FLEETWEB_BREAK_GLASS_ADMIN or not has_role(user, ADMIN):
                return None
        return user


def lockout_parameters(request_or_attempt, credentials: dict | None = None) -> list:
    """What django-axes counts failures by (AXES_LOCKOUT_PARAMETERS). A username, so guessing one account from many
    addresses stops; an address, so spraying names from one stops, but only when the address is the client's (behind
    a proxy that means FLEETWEB_TRUSTED_PROXIES is set; otherwise every client would share the proxy's). The
    break-glass admin is counted per (name, address) only: anonymous traffic elsewhere cannot lock them out."""
    from axes.helpers import get_client_username

    if isinstance(request_or_attempt, HttpRequest):
        username = get_client_username(request_or_attempt, credentials)
    else:
        username = getattr(request_or_attempt, "username", None)
    address_known = bool(settings.FLEETWEB_TRUSTED_PROXIES) or not settings.BEHIND_TLS_PROXY
    by_address: list = ["ip_address"] if address_known else []
    if settings.FLEETWEB_BREAK_GLASS_ADMIN and username == settings.FLEETWEB_BREAK_GLASS_ADMIN:
        return [["username", "ip_address"], *by_address]
    return ["username", *by_address]


def sign_in_options() -> dict:
    """What the login page offers: the single sign-on button and whether password sign-in is on (the login
    view, and the sign-on views when they show it again with an error)."""
    return {"sso_enabled": bool(settings.FLEETWEB_OIDC_ISSUER), "sso_label": settings.FLEETWEB_OIDC_LABEL,
            "local_login": settings.FLEETWEB_LOCAL_LOGIN}
