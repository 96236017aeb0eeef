"""The one builder of direct credentials (API server URL + CA bundle + bearer token or client certificate), used by
the attach wizard's form and the API's serializer alike, with the PEM checks both need.

PEM is parsed, not only looked for: a bundle with a truncated certificate, or a key that is not one, is refused at
save with the field named, not discovered as a TLS error at the first sync. Messages never quote the input.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from foundation.errors import ServiceError
from inventory.validators import normalize_server_url


class CredentialsError(ServiceError):
    """Credentials Fleetweb cannot use; `errors` names each field at fault."""


def certificate_problem(pem: str, what: str) -> str:
    """'' when `pem` holds one or more PEM certificates, else why not."""
    if "-----BEGIN CERTIFICATE-----" not in pem:
        return f"The {what} must be PEM (-----BEGIN CERTIFICATE----- …)."
    try:
        x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        return f"The {what} is not a valid PEM certificate (truncated, or not base64 inside)."
    return ""


def key_problem(pem: str) -> str:
    """'' when `pem` is an unencrypted PEM private key, else why not."""
    if "PRIVATE KEY-----" not in pem:
        return "The client key must be a PEM private key (-----BEGIN … PRIVATE KEY----- …)."
    try:
        serialization.load_pem_private_key(pem.encode(), password=None)
    except TypeError:
        return "The client key is encrypted; give it without a passphrase."
    except (ValueError, Exception):  # cryptography raises several types for bad keys; none may reach the user
        return "The client key is not a valid PEM private key."
    return ""


def direct(*, server: str, ca_data: str = "", token: str = "", client_cert: str = "", client_key: str = "") -> dict:
    """Credentials for a server URL and a token or a client certificate; CredentialsError naming every bad field."""
    ca, token = (ca_data or "").strip(), (token or "").strip()
    cert, key = (client_cert or "").strip(), (client_key or "").strip()
    errors: dict[str, str] = {}
    if ca and (problem := certificate_problem(ca, "CA bundle")):
        errors["ca_data"] = problem
    if token and (cert or key):
        errors["token"] = "Give either a token or a client certificate, not both."
    elif not token and not cert:
        errors["token"] = "A bearer token or a client certificate is required (token, or client_cert with client_key)."
    elif cert and not key:
        errors["client_key"] = "A client certificate needs its private key."
    if cert and (problem := certificate_problem(cert, "client certificate")):
        errors["client_cert"] = problem
    if cert and key and (problem := key_problem(key)):
        errors["client_key"] = problem
    if errors:
        raise CredentialsError(errors)
    server = normalize_server_url(server)
    if token:
        return {"method": "token", "server": server, "ca_data": ca, "token": token}
    return {"method": "client_cert", "server": server, "ca_data": ca, "client_cert": cert, "client_key": key}


def expiry_of(credentials: dict) -> datetime | None:
    """When these credentials stop working, where they say so: a client certificate's notAfter, a JWT bearer
    token's `exp` (read, not verified: only the cluster can verify it). None when unknown (opaque tokens,
    exec plugins)."""
    token, cert = credentials.get("token", ""), credentials.get("client_cert", "")
    if credentials.get("method") == "kubeconfig":
        user = credentials["kubeconfig"]["users"][0]["user"]
        token = user.get("token", "")
        data = user.get("client-certificate-data", "")
        try:
            cert = base64.b64decode(data).decode() if data else ""
        except (ValueError, UnicodeDecodeError):
            cert = ""
    if cert:
        try:
            return min(c.not_valid_after_utc for c in x509.load_pem_x509_certificates(cert.encode()))
        except ValueError:
            return None
    return _jwt_expiry(token) if token else None


def _jwt_expiry(token: str) -> datetime | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        exp = claims.get("exp") if isinstance(claims, dict) else None
        return datetime.fromtimestamp(int(exp), tz=UTC) if isinstance(exp, int | float) else None
    except (ValueError, TypeError, OverflowError, OSError):
        return None
