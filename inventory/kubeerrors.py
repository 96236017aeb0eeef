"""What went wrong in a call to a member, in Fleetweb's words: `KubeError` (its kind, the cluster status it implies,
whether it is fatal or worth retrying) and `classify`, which names urllib3, TLS, DNS and HTTP failures precisely and
never echoes what the other side said, except a Kubernetes Status message (capped)."""

from __future__ import annotations

import errno
import json
import socket
import ssl

import urllib3
from django.conf import settings
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from foundation import outbound
from inventory.choices import ClusterStatus


class KubeError(Exception):
    """A failed call to a member cluster, classified so the UI can say exactly what went wrong."""

    # The one table of error kinds: kind -> (cluster status it implies, worth retrying soon, fatal: the cluster did
    # not answer or refused who we are, so no further call of this sync or check can work).
    KINDS: dict[str, tuple[str, bool, bool]] = {
        "dns": (ClusterStatus.UNREACHABLE, True, True),
        "refused": (ClusterStatus.UNREACHABLE, True, True),
        "timeout": (ClusterStatus.UNREACHABLE, True, True),
        "network": (ClusterStatus.UNREACHABLE, True, True),
        "tls": (ClusterStatus.TLS_ERROR, False, True),
        "unauthorized": (ClusterStatus.UNAUTHORIZED, False, True),
        "forbidden": (ClusterStatus.UNAUTHORIZED, False, False),
        "gone": (ClusterStatus.ERROR, True, False),
        "http": (ClusterStatus.ERROR, True, False),
        "config": (ClusterStatus.ERROR, False, True),
        "protocol": (ClusterStatus.ERROR, True, False),
        "policy": (ClusterStatus.ERROR, False, False),
        "conflict": (ClusterStatus.ERROR, False, False),
    }

    def __init__(self, kind: str, message: str, *, http_status: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.http_status = http_status

    @property
    def status(self) -> str:
        return self.KINDS[self.kind][0]

    @property
    def fatal(self) -> bool:
        """Nothing more can work against this cluster now (it did not answer, or refused who we are)."""
        return self.KINDS[self.kind][2]

    @property
    def transient(self) -> bool:
        """Worth retrying soon; 401/403 and TLS failures will not fix themselves."""
        return self.KINDS[self.kind][1] and (self.http_status is None or self.http_status >= 500
                                                 or self.http_status == 429 or self.kind == "gone")


def classify(exc: BaseException, *, what: str = "") -> KubeError:
    """Map urllib3/ssl/socket/ApiException failures to a KubeError with a precise message (never the other side's
    words, except a Kubernetes Status message)."""
    prefix = f"{what}: " if what else ""
    if isinstance(exc, KubeError):
        return exc
    if isinstance(exc, ApiException) and not exc.status and isinstance(exc.__context__, BaseException):
        # The client wraps transport failures (e.g. urllib3's SSLError) in ApiException(status=0).
        return classify(exc.__context__, what=what)
    if isinstance(exc, ApiException):
        return _http_error(exc, prefix)
    if isinstance(exc, outbound.OutboundRefused):
        return KubeError(exc.kind, f"{prefix}{exc}")
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        return classify(exc.reason, what=what)
    if isinstance(exc, urllib3.exceptions.SSLError | ssl.SSLError):
        return KubeError("tls", f"{prefix}TLS verification failed: {_tls_detail(exc)}")
    # urllib3 2: NameResolutionError < NewConnectionError < ConnectTimeoutError, so the specific ones first.
    if isinstance(exc, urllib3.exceptions.NameResolutionError):
        return KubeError("dns", f"{prefix}DNS lookup failed for '{exc.conn.host}'")
    if isinstance(exc, urllib3.exceptions.NewConnectionError) and (failed := _connect_error(exc, prefix)):
        return failed
    return _transport_error(exc, prefix)


def _http_error(exc: ApiException, prefix: str) -> KubeError:
    status = exc.status or 0
    reason = _api_message(exc)
    if status == 401:
        return KubeError("unauthorized", f"{prefix}401 Unauthorized: the API server rejected the credentials "
                         "(token revoked or expired?)", http_status=401)
    if status == 403:
        return KubeError("forbidden", f"{prefix}403 Forbidden: {reason}", http_status=403)
    if status == 410:
        return KubeError("gone", f"{prefix}410 Gone: {reason}", http_status=410)
    return KubeError("http", f"{prefix}HTTP {status}: {reason}", http_status=status)


def _tls_detail(exc: BaseException) -> str:
    """What the local TLS stack said (our verification result, not the server's words)."""
    detail = str(exc.args[0] if exc.args else exc)
    if isinstance(exc, urllib3.exceptions.SSLError) and exc.args and isinstance(exc.args[0], ssl.SSLError):
        detail = exc.args[0].reason or str(exc.args[0])
        if isinstance(exc.args[0], ssl.SSLCertVerificationError):
            detail = exc.args[0].verify_message or detail
    return detail


def _connect_error(exc: urllib3.exceptions.NewConnectionError, prefix: str) -> KubeError | None:
    """Refused, DNS, unreachable or another socket error; None for a timeout (classified as one after)."""
    cause = exc.__cause__ or exc.__context__
    text = str(exc)
    if isinstance(cause, ConnectionRefusedError) or "Connection refused" in text:
        return KubeError("refused", f"{prefix}connection refused by {exc.conn.host}:{exc.conn.port} "
                         "(API server down or wrong port?)")
    if isinstance(cause, socket.gaierror) or "Name or service not known" in text:
        return KubeError("dns", f"{prefix}DNS lookup failed for '{exc.conn.host}'")
    if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return KubeError("network", f"{prefix}network unreachable: {cause.strerror}")
    if "timed out" in text:
        return None
    reason = f": {cause.strerror}" if isinstance(cause, OSError) and cause.strerror else ""
    return KubeError("network", f"{prefix}cannot connect to {exc.conn.host}:{exc.conn.port}{reason}")


def _in_handshake(exc: BaseException) -> bool:
    """Whether a timeout came from the TLS handshake (Python's own text for it, never the other side's)."""
    seen: BaseException | None = exc
    for _depth in range(4):
        if seen is None:
            return False
        if isinstance(seen, TimeoutError | socket.timeout) and "handshake operation timed out" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _transport_error(exc: BaseException, prefix: str) -> KubeError:
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return KubeError("timeout", f"{prefix}connection timed out after {settings.FLEETWEB_KUBE_CONNECT_TIMEOUT}s")
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError | TimeoutError | socket.timeout):
        if _in_handshake(exc):  # urllib3 calls it a read timeout, but the connect timeout bounds the handshake
            return KubeError("timeout", f"{prefix}no TLS handshake within {settings.FLEETWEB_KUBE_CONNECT_TIMEOUT}s "
                                        "(connect timeout)")
        return KubeError("timeout", f"{prefix}no answer within {settings.FLEETWEB_KUBE_READ_TIMEOUT}s (read timeout)")
    if isinstance(exc, urllib3.exceptions.ProtocolError | ConnectionError):
        # Never the text: a non-HTTP server's banner lands there.
        return KubeError("network", f"{prefix}connection broken: the server closed it or does not speak HTTP(S)")
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return KubeError("protocol", f"{prefix}invalid HTTP exchange ({type(exc).__name__})")
    if isinstance(exc, ConfigException):
        return KubeError("config", f"{prefix}{exc}")
    return KubeError("protocol", f"{prefix}{type(exc).__name__}")


MAX_STATUS_MESSAGE = 500


def _api_message(exc: ApiException) -> str:
    """The message of a Kubernetes Status object the server sent, else the standard reason phrase of the HTTP
    status: never another body, nor the server's own reason text (anything may answer a URL)."""
    from http import HTTPStatus

    try:
        phrase = HTTPStatus(exc.status).phrase
    except ValueError:
        phrase = ""
    try:
        body = json.loads(exc.body or b"{}")
    except (ValueError, TypeError, RecursionError):
        return phrase
    if not (isinstance(body, dict) and body.get("kind") == "Status" and body.get("apiVersion", "v1") == "v1"
            and isinstance(body.get("message"), str)):
        return phrase
    message = "".join(ch if ch.isprintable() else " " for ch in body["message"]).strip()
    if len(message) > MAX_STATUS_MESSAGE:
        message = message[:MAX_STATUS_MESSAGE] + "…"
    return message or phrase
