"""API tokens: created (shown once), used, revoked. Stored as SHA-256 digests, so the database never holds a key
that works; `TokenAuthentication` reads `Authorization: Bearer <key>` (or `Token <key>`, the old header)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from foundation.audit import record
from foundation.errors import ServiceError
from foundation.models import ApiToken, ServiceAccount
from foundation.roles import ADMIN, has_role

PREFIX = "fwt_"
MAX_DAYS = 366
LAST_USED_EVERY = timedelta(seconds=60)  # last-used is written at most once a minute per token


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _view(token: ApiToken) -> dict:
    return {"name": token.name, "prefix": token.prefix, "for": token.user.get_username(),
            "read_only": token.read_only, "expires_at": token.expires_at.isoformat()}


def create_token(*, owner: User, user, name: str, days: int = 90, read_only: bool = False,
                 source_ip: str = "") -> tuple[ApiToken, str]:
    """A new token for `owner` (by `owner` themself, or by an admin for a service account); returns it and the
    key, which is never shown again."""
    name = (name or "").strip()
    if not name:
        raise ServiceError({"name": "Name the token (what uses it)."})
    if len(name) > 100:
        raise ServiceError({"name": "At most 100 characters."})
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise ServiceError({"days": f"An expiry between 1 and {MAX_DAYS} days."})
    if user is not None and user.pk != owner.pk:
        if not has_role(user, ADMIN) or not hasattr(owner, "service_account"):
            raise ServiceError("Tokens are created by their owner (admins: for service accounts).", status=403)
    if user is not None and user.pk == owner.pk and hasattr(owner, "service_account"):
        raise ServiceError("A service account cannot create tokens.", status=403)
    key = PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(user=owner, name=name, prefix=key[:12], digest=digest(key),
                                        read_only=bool(read_only), created_by=user if getattr(user, "pk", None)
                                        else None, expires_at=timezone.now() + timedelta(days=days))
        record(user=user, action="token.create", target=owner, source_ip=source_ip,
               target_name=f"API token '{name}' of {owner.get_username()}", after=_view(token))
    return token, key


def revoke_token(token: ApiToken, *, user, source_ip: str = "") -> ApiToken:
    """Revoke a token: its owner or an admin. A revoked token answers 401 from the next request on."""
    if user is not None and user.pk != token.user_id and not has_role(user, ADMIN):
        raise ServiceError("No such token.", status=404)
    with transaction.atomic():
        updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        token.refresh_from_db()
        if not updated:
            raise ServiceError("This token is already revoked.", status=409)
        record(user=user, action="token.revoke", target=token.user, source_ip=source_ip,
               target_name=f"API token '{token.name}' of {token.user.get_username()}", before=_view(token))
    return token


def create_service_account(*, username: str, user, description: str = "", source_ip: str = "") -> User:
    """A user that cannot log in (no password), for CI: admins only; give it roles like anyone."""
    if user is not None and not has_role(user, ADMIN):
        raise ServiceError("Service accounts are created by admins.", status=403)
    username = (username or "").strip()
    if not username or len(username) > 150:
        raise ServiceError({"username": "A username of 1 to 150 characters."})
    if User.objects.filter(username=username).exists():
        raise ServiceError({"username": f"The username '{username}' is taken."})
    with transaction.atomic():
        account = User(username=username)
        account.set_unusable_password()
        account.save()
        ServiceAccount.objects.create(user=account, description=description,
                                      created_by=user if getattr(user, "pk", None) else None)
        record(user=user, action="service_account.create", target=account, source_ip=source_ip,
               after={"username": username, "description": description})
    return account


class TokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer fwt_…`: 401 for an unknown, expired or revoked key, or an inactive owner."""

    keywords = ("bearer", "token")

    def authenticate(self, request) -> tuple[User, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower().decode(errors="replace") not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: give one token after the keyword.")
        try:
            key = header[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        token = ApiToken.objects.select_related("user").filter(digest=digest(key)).first()
        now = timezone.now()
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This token was revoked.")
        if token.expires_at <= now:
            raise exceptions.AuthenticationFailed("This token has expired.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The token's owner is deactivated.")
        if token.last_used_at is None or token.last_used_at < now - LAST_USED_EVERY:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class TokenScheme(OpenApiAuthenticationExtension):
    """The OpenAPI description of the token header."""

    target_class = "inventory.people.tokens.TokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema) -> dict:
        return {"type": "http", "scheme": "bearer", "description": "A token from 'My tokens' (fwt_…)"}
