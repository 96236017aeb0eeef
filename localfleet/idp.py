"""A real OpenID Connect provider for the single sign-on tests: Ory Hydra (built from its Go module into the
binary cache like the members' binaries, in-memory storage) and the small login-and-consent app every Hydra
deployment brings, here with a directory of people, passwords and groups that tests change as they go.

    idp = IdentityProvider(state_dir).start()
    idp.add_person("pat", "pw", groups=["payments-sre"])
    client_id, secret = idp.create_client(redirect_uri)
    ... idp.issuer ...
    idp.stop()

Hydra serves plain HTTP on 127.0.0.1 (`--dev`: its TLS moved to a proxy in v2); Fleetweb accepts an http issuer
only on a loopback address, and only where the outbound policy allows loopback.
"""

from __future__ import annotations

import html
import json
import os
import secrets
import socket
import subprocess
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from localfleet import binaries, procs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class IdentityProvider:
    def __init__(self, state_dir: Path):
        self.dir = Path(state_dir)
        self.public_port, self.admin_port, self.app_port = _free_port(), _free_port(), _free_port()
        self.people: dict[str, dict] = {}
        self.proc: subprocess.Popen | None = None
        self.app: ThreadingHTTPServer | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.public_port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    # -- the directory ------------------------------------------------------------------------

    def add_person(self, username: str, password: str, *, groups: list[str], email: str = "") -> None:
        self.people[username] = {"password": password, "groups": list(groups), "email": email or
                                 f"{username}@example.test", "disabled": False}

    def set_groups(self, username: str, groups: list[str]) -> None:
        self.people[username]["groups"] = list(groups)

    def disable(self, username: str) -> None:
        self.people[username]["disabled"] = True

    # -- Hydra --------------------------------------------------------------------------------

    def start(self, *, timeout: float = 60) -> IdentityProvider:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._start_app()
        config = self.dir / "hydra.json"
        config.write_text(json.dumps({
            "dsn": "memory", "log": {"level": "warn"},
            "serve": {"public": {"port": self.public_port, "host": "127.0.0.1"},
                      "admin": {"port": self.admin_port, "host": "127.0.0.1"}},
            "urls": {"self": {"issuer": self.issuer}, "login": f"http://127.0.0.1:{self.app_port}/login",
                     "consent": f"http://127.0.0.1:{self.app_port}/consent"},
            "secrets": {"system": [secrets.token_hex(16)]},
            "ttl": {"id_token": "1h", "access_token": "1h"},
        }))
        log = (self.dir / "hydra.log").open("ab")
        self.proc = procs.started(subprocess.Popen(
            [str(binaries.path_of("hydra")), "serve", "all", "--dev", "--sqa-opt-out", "-c", str(config)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "DSN": "memory"}))
        try:
            procs.wait_ready(self.proc, f"{self.admin}/health/ready", name="hydra", log=self.dir / "hydra.log",
                             timeout=timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        procs.stop(self.proc)
        if self.app is not None:
            self.app.shutdown()
            self.app.server_close()
            self.app = None

    def _admin_call(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(f"{self.admin}{path}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read() or b"{}")

    def create_client(self, redirect_uri: str) -> tuple[str, str]:
        """A confidential client for Fleetweb (code flow, PKCE); returns (client id, secret)."""
        secret = secrets.token_urlsafe(24)
        client = self._admin_call("POST", "/admin/clients", {
            "client_name": "fleetweb", "client_secret": secret, "grant_types": ["authorization_code"],
            "response_types": ["code"], "scope": "openid profile email", "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": "client_secret_basic"})
        return client["client_id"], secret

    # -- the login and consent app --------------------------------------------------------------

    def _start_app(self) -> None:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _query(self) -> dict:
                return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))

            def _redirect(self, url: str) -> None:
                self.send_response(302)
                self.send_header("Location", url)
                self.end_headers()

            def _page(self, body: str, status: int = 200) -> None:
                data = f"<!doctype html><title>Example IdP</title><h1>Example IdP</h1>{body}".encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _login_form(self, challenge: str, error: str = "") -> None:
                self._page((f"<p id='idp-error'>{html.escape(error)}</p>" if error else "") + (
                    f"<form method='post' action='/login'><input type='hidden' name='challenge' "
                    f"value='{html.escape(challenge)}'><label>Username <input name='username' id='idp-username'>"
                    f"</label><label>Password <input type='password' name='password' id='idp-password'></label>"
                    f"<button type='submit' id='idp-submit'>Sign in</button></form>"))

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = urllib.parse.urlsplit(self.path).path
                query = self._query()
                if path == "/login":
                    self._login_form(query.get("login_challenge", ""))
                elif path == "/consent":
                    self._consent(query.get("consent_challenge", ""))
                else:
                    self._page("not here", 404)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                challenge = form.get("challenge", "")
                person = idp.people.get(form.get("username", ""))
                quoted = urllib.parse.quote(challenge)
                if person is None or person["password"] != form.get("password") or person["disabled"]:
                    if person is not None and person["disabled"]:
                        answer = idp._admin_call("PUT", f"/admin/oauth2/auth/requests/login/reject?login_challenge="
                                                        f"{quoted}", {"error": "access_denied",
                                                                      "error_description": "account disabled"})
                        return self._redirect(answer["redirect_to"])
                    return self._login_form(challenge, "Wrong username or password.")
                answer = idp._admin_call("PUT", f"/admin/oauth2/auth/requests/login/accept?login_challenge={quoted}",
                                         {"subject": form["username"], "remember": False})
                self._redirect(answer["redirect_to"])

            def _consent(self, challenge: str) -> None:
                quoted = urllib.parse.quote(challenge)
                asked = idp._admin_call("GET", f"/admin/oauth2/auth/requests/consent?consent_challenge={quoted}")
                person = idp.people[asked["subject"]]
                answer = idp._admin_call("PUT", f"/admin/oauth2/auth/requests/consent/accept?consent_challenge="
                                                f"{quoted}", {
                    "grant_scope": asked.get("requested_scope", []),
                    "grant_access_token_audience": asked.get("requested_access_token_audience", []),
                    "session": {"id_token": {"groups": person["groups"], "email": person["email"],
                                             "preferred_username": asked["subject"]}}})
                self._redirect(answer["redirect_to"])

        self.app = ThreadingHTTPServer(("127.0.0.1", self.app_port), Handler)
        threading.Thread(target=self.app.serve_forever, daemon=True).start()

