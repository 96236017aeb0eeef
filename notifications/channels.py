"""Sending one message to one channel: a signed JSON webhook, a Slack-compatible incoming webhook, email.

Every URL is dialled through the outbound address policy (pinned address, no redirects, no proxies from the
environment), with short timeouts, so one slow receiver costs one worker slot for at most 15 seconds. What a
receiver answers is reduced to its status code: its body is never stored, logged or shown.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
from http import HTTPStatus

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from foundation import outbound
from notifications.choices import ChannelKind

SCHEMES = ("https", "http")
CONNECT_TIMEOUT, READ_TIMEOUT = 5, 10


class DeliveryError(Exception):
    """The message did not arrive; the text is Fleetweb's own words. `retry`: trying later may help."""

    def __init__(self, message: str, *, retry: bool = True):
        super().__init__(message)
        self.retry = retry


def sign(secret: str, body: bytes) -> str:
    """X-Fleetweb-Signature: HMAC-SHA256 of the body under the shared secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def answer_of(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def post_json(url: str, payload: dict, *, what: str, headers: dict | None = None, secret: str = "") -> str:
    """POST `payload` as JSON (signed when `secret` is given); the answer ('HTTP 200 OK') or DeliveryError."""
    import urllib3

    body = json.dumps(payload, sort_keys=True).encode()
    sent = {"Content-Type": "application/json", "User-Agent": "Fleetweb", **(headers or {})}
    if secret:
        sent["X-Fleetweb-Signature"] = sign(secret, body)
    try:
        pinned, pool = outbound.pool_manager(url, schemes=SCHEMES, what=what, purpose="channel")
        with pool:
            response = pool.request("POST", pinned, body=body, headers=sent, retries=False, redirect=False,
                                    timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
                                    preload_content=False)
            response.release_conn()
    except outbound.OutboundRefused as exc:
        # A name that does not resolve may resolve later; an address the policy refuses never will.
        raise DeliveryError(str(exc), retry=exc.kind == "dns") from None
    except urllib3.exceptions.HTTPError as exc:
        raise DeliveryError(_transport_error(exc)) from None
    answer = answer_of(response.status)
    if 200 <= response.status < 300:
        return answer
    # 4xx other than 408/429 will not get better by retrying (a revoked Slack URL answers 404 or 410).
    raise DeliveryError(answer, retry=response.status >= 500 or response.status in (408, 429))


def _transport_error(exc: Exception) -> str:
    import urllib3

    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return "connection timed out"
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return f"no answer within {READ_TIMEOUT} s"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return "TLS error (certificate not trusted or handshake failed)"
    if isinstance(exc, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ProtocolError):
        return "connection refused or reset"
    return f"transport error ({type(exc).__name__})"


def mrkdwn(text) -> str:
    """Text as Slack mrkdwn shows it literally: `&`, `<` and `>` escaped as Slack asks, so a member's words
    (a status message, a name) cannot become a link (`<https://evil|click>`) or a mention (`<!channel>`)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def header_text(text, limit: int = 200) -> str:
    """Text for a mail header: one line, no control characters (a CR/LF would start another header)."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in str(text)).split())[:limit]


def slack_body(payload: dict) -> dict:
    """The Slack (and Mattermost, Rocket.Chat, Teams workflow) incoming-webhook message: text with a link. Every
    text is escaped; only Fleetweb's own link stays a link."""
    lines = [f"*{mrkdwn(payload['title'])}*"]
    if payload.get("text"):
        lines.append(mrkdwn(payload["text"]))
    lines += [f"• {mrkdwn(item)}" for item in payload.get("items", [])[:50]]
    if payload.get("url"):
        lines.append(f"<{payload['url']}|Open in Fleetweb>")
    return {"text": "\n".join(lines)}


def email_text(payload: dict) -> str:
    lines = [payload["title"], ""]
    if payload.get("text"):
        lines += [payload["text"], ""]
    lines += [f"- {item}" for item in payload.get("items", [])]
    if payload.get("url"):
        lines += ["", payload["url"]]
    lines += ["", f"-- Fleetweb, event {payload['event']}, delivery {payload.get('delivery', '')}"]
    return "\n".join(lines)


def send_email(recipients: list[str], payload: dict) -> str:
    if not settings.EMAIL_HOST:
        raise DeliveryError("email is not configured (FLEETWEB_EMAIL_HOST is unset)", retry=False)
    message = EmailMessage(subject=header_text(f"[Fleetweb] {payload['title']}"), body=email_text(payload),
                           to=recipients, headers={"X-Fleetweb-Event": header_text(payload["event"])})
    try:
        get_connection(timeout=settings.EMAIL_TIMEOUT).send_messages([message])
    except smtplib.SMTPRecipientsRefused:
        raise DeliveryError("the SMTP server refused every recipient", retry=False) from None
    except smtplib.SMTPAuthenticationError:
        raise DeliveryError("the SMTP server refused the user name or password (FLEETWEB_EMAIL_USER)",
                            retry=False) from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(f"the SMTP server answered {exc.smtp_code}", retry=exc.smtp_code >= 400) from None
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP server unreachable ({type(exc).__name__})") from None
    return f"accepted by the SMTP server for {len(recipients)} recipient(s)"


def send(channel, payload: dict) -> str:
    """Deliver `payload` (see notifications.payload_of) to `channel`; the answer, or DeliveryError."""
    if channel.kind == ChannelKind.EMAIL:
        return send_email(list(channel.recipients), payload)
    secret = channel.open()
    what = f"URL of channel {channel.name}"
    if channel.kind == ChannelKind.SLACK:
        return post_json(secret["url"], slack_body(payload), what=what)
    return post_json(secret["url"], payload, what=what, secret=secret.get("secret", ""),
                     headers={"X-Fleetweb-Event": payload["event"], "X-Fleetweb-Delivery": payload.get("delivery", "")})
