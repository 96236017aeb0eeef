"""Password sign-in, switchable off (FLEETWEB_LOCAL_LOGIN=false) except for the break-glass admin; accounts that
sign in through the identity provider or are service accounts never sign in with a password."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User

from fleetweb.roles import ADMIN, has_role


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
