"""Single sign-on with OpenID Connect: the authorization code flow with PKCE (S256), state and nonce, through
Authlib's OAuth 2 client; the ID token's signature and claims (iss, aud, exp, nonce) checked with joserfc against
the provider's published keys. Every call to the provider goes through the outbound address policy. Errors
shown to people never repeat what the provider answered.

At each sign-in the account is found by (issuer, subject), created at the first, and its roles are set from
the groups claim through the role mapping (`team_services.sync_sso_roles`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
from urllib.parse import urlsplit

from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from foundation import outbound
from inventory.models import SsoIdentity
from inventory.people import services as team_services

log = logging.getLogger(__name__)

SESSION_KEY = "fleetweb_sso"
CACHE_SECONDS = 300
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
_cache: dict[str, tuple[float, dict]] = {}


class SsoError(Exception):
    """A sign-in that did not happen; the message is for the person signing in."""


def enabled() -> bool:
    return bool(settings.FLEETWEB_OIDC_ISSUER)


def schemes_for(url: str) -> tuple[str, ...]:
    """https; plain http only for a provider on this machine's loopback (a development provider), which the
    outbound policy must allow as well."""
    host = (urlsplit(url).hostname or "").lower()
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return ("https", "http") if loopback else ("https",)


def _session(*urls: str, session=None):
    return outbound.requests_session(*urls, what="OIDC issuer URL", session=session, schemes=schemes_for(urls[0]),
                                     verify=settings.FLEETWEB_OIDC_CA_FILE or True)


def _get_json(url: str) -> dict:
    try:
        response = _session(url).get(url, timeout=10)
    except outbound.OutboundRefused as exc:
        raise SsoError(f"The identity provider is refused by the outbound address policy: {exc}") from None
    except Exception as exc:  # requests' connection, TLS and timeout errors, or the policy inside them
        log.warning("OIDC: %s unreachable: %s", url, type(exc).__name__)
        raise SsoError("The identity provider could not be reached; try again, or ask an admin.") from None
    if response.status_code != 200:
        log.warning("OIDC: %s answered %s", url, response.status_code)
        raise SsoError("The identity provider could not be reached; try again, or ask an admin.")
    try:
        return response.json()
    except ValueError:
        raise SsoError("The identity provider sent something that is not JSON.") from None


def metadata(*, refresh: bool = False) -> dict:
    """The provider's discovery document and keys, cached for five minutes per process."""
    issuer = settings.FLEETWEB_OIDC_ISSUER
    cached = _cache.get(issuer)
    if cached and not refresh and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    meta = _get_json(f"{issuer}/.well-known/openid-configuration")
    if str(meta.get("issuer", "")).rstrip("/") != issuer:
        raise SsoError("The identity provider names another issuer than FLEETWEB_OIDC_ISSUER: sign-in is refused.")
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(meta.get(key), str):
            raise SsoError(f"The identity provider's discovery document has no {key}.")
        try:
            outbound.check_url(meta[key], what="OIDC issuer URL", schemes=schemes_for(meta[key]), purpose="idp")
        except outbound.OutboundRefused as exc:
            raise SsoError(f"The identity provider's {key} is refused by the outbound address policy: {exc}") from None
    meta = {**meta, "keys": _get_json(meta["jwks_uri"])}
    _cache[issuer] = (time.monotonic(), meta)
    return meta


def _client(redirect_uri: str) -> OAuth2Session:
    return OAuth2Session(settings.FLEETWEB_OIDC_CLIENT_ID, settings.FLEETWEB_OIDC_CLIENT_SECRET,
                         scope=settings.FLEETWEB_OIDC_SCOPES, redirect_uri=redirect_uri,
                         code_challenge_method="S256")


def begin(request, *, redirect_uri: str, next_url: str) -> str:
    """The provider's authorization URL for this browser; state, nonce and PKCE verifier stay in its session."""
    meta = metadata()
    state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
    request.session[SESSION_KEY] = {"state": state, "nonce": nonce, "verifier": verifier, "next": next_url}
    url, _ = _client(redirect_uri).create_authorization_url(meta["authorization_endpoint"], state=state,
                                                            nonce=nonce, code_verifier=verifier)
    return url


def finish(request, *, redirect_uri: str) -> tuple[User, str]:
    """Check the provider's answer, exchange the code, verify the ID token, sign the account in (created at the
    first sign-in, roles re-synced); returns (user, where to go next)."""
    pending = request.session.pop(SESSION_KEY, None)
    if not pending or request.GET.get("state") != pending["state"]:
        raise SsoError("This sign-in expired or was started in another window: start again.")
    if request.GET.get("error") or not request.GET.get("code"):
        raise SsoError("The identity provider did not sign you in.")
    meta = metadata()
    client = _session(meta["token_endpoint"], session=_client(redirect_uri))
    try:
        token = client.fetch_token(meta["token_endpoint"], code=request.GET["code"],
                                   code_verifier=pending["verifier"], timeout=10)
    except Exception as exc:  # a refused code, the provider down, the policy: never echo the provider
        log.warning("OIDC: token exchange failed: %s", type(exc).__name__)
        raise SsoError("The identity provider did not confirm this sign-in: start again.") from None
    raw = token.get("id_token")
    if not raw:
        raise SsoError("The identity provider sent no ID token (is 'openid' in FLEETWEB_OIDC_SCOPES?).")
    claims = verify_id_token(raw, nonce=pending["nonce"])
    return sign_in(claims), pending["next"]


def verify_id_token(raw: str, *, nonce: str) -> dict:
    """The ID token's claims once its signature, issuer, audience, expiry and nonce check out."""
    for attempt in (0, 1):  # a key not found may be a rotation: fetch the keys again, once
        keys = KeySet.import_key_set(metadata(refresh=attempt == 1)["keys"])
        try:
            token = jwt.decode(raw, keys, algorithms=ALGORITHMS)
            break
        except (JoseError, ValueError) as exc:
            if attempt == 1:
                log.warning("OIDC: ID token refused: %s", type(exc).__name__)
                raise SsoError("The identity provider's ID token did not verify: sign-in refused.") from None
    registry = jwt.JWTClaimsRegistry(
        leeway=60, iss={"essential": True, "value": settings.FLEETWEB_OIDC_ISSUER},
        aud={"essential": True, "value": settings.FLEETWEB_OIDC_CLIENT_ID}, sub={"essential": True},
        exp={"essential": True}, nonce={"essential": True, "value": nonce})
    claims = dict(token.claims)
    if isinstance(claims.get("iss"), str):
        claims["iss"] = claims["iss"].rstrip("/")
    try:
        registry.validate(claims)
    except JoseError as exc:
        log.warning("OIDC: ID token claims refused: %s", type(exc).__name__)
        raise SsoError("The identity provider's ID token is not for this Fleetweb, or has expired.") from None
    return claims


def claim_values(claims: dict) -> list[str]:
    """The groups claim as a list of strings (a string alone is one value; anything else: none)."""
    value = claims.get(settings.FLEETWEB_OIDC_GROUPS_CLAIM)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return sorted({v for v in value if isinstance(v, str) and 0 < len(v) <= 255})


def _username(claims: dict, subject: str) -> str:
    wanted = str(claims.get(settings.FLEETWEB_OIDC_USERNAME_CLAIM) or claims.get("email") or subject)[:120]
    if not User.objects.filter(username=wanted).exists():
        return wanted
    # Taken by someone else (maybe a local account): never take it over.
    return f"{wanted[:100]}-{hashlib.sha256(subject.encode()).hexdigest()[:8]}"


def sign_in(claims: dict) -> User:
    subject = str(claims["sub"])
    values = claim_values(claims)
    with transaction.atomic():
        identity = (SsoIdentity.objects.select_for_update().select_related("user")
                    .filter(issuer=settings.FLEETWEB_OIDC_ISSUER, subject=subject).first())
        if identity is None:
            user = User(username=_username(claims, subject), email=str(claims.get("email") or "")[:254])
            user.set_unusable_password()
            user.save()
            identity = SsoIdentity.objects.create(user=user, issuer=settings.FLEETWEB_OIDC_ISSUER, subject=subject)
        user = identity.user
        if not user.is_active:
            raise SsoError("Your Fleetweb account is deactivated: ask an admin.")
        team_services.sync_sso_roles(user, values)
        identity.claim_values, identity.last_login_at = values, timezone.now()
        identity.save(update_fields=["claim_values", "last_login_at"])
    return user
