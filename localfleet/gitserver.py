"""A real Git server over HTTP for the tests of applications read from Git: Git's own smart-HTTP server
(`git http-backend`, the CGI program behind most self-hosted Git servers) behind a small threaded HTTP server, serving
the bare repositories under one folder. With a token, every request needs it (HTTP basic, any user name, as GitHub,
GitLab and Gitea take tokens); pushes need it always.

    python -m localfleet.gitserver --root DIR --port N [--token-file F]      # a process of its own

    server = GitServer(state_dir, token="s3cret").start()
    server.create("payments/deploy")                      # a bare repository, served at server.url("payments/deploy")
    server.commit("payments/deploy", {"deploy.yaml": "..."}, message="first")   # pushed through the server -> sha
"""

from __future__ import annotations

import argparse
import base64
import hmac
import os
import shutil
import subprocess
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urlsplit

from localfleet import procs
from localfleet.member import free_port

GIT = shutil.which("git") or "git"


class _Handler(BaseHTTPRequestHandler):
    root: Path
    token: str
    protocol_version = "HTTP/1.0"  # the CGI's body is streamed until it ends

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        sys.stderr.write("gitserver: " + format % args + "\n")

    def _authorized(self, *, push: bool) -> bool:
        if not self.token:
            return not push  # an open server serves clones only
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            _user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return hmac.compare_digest(password, self.token)

    def _serve(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/":  # readiness
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            return
        push = "git-receive-pack" in url.path or "service=git-receive-pack" in url.query
        if not self._authorized(push=push):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        env = {"PATH": os.environ.get("PATH", ""), "GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1",
               "REQUEST_METHOD": self.command, "PATH_INFO": url.path, "QUERY_STRING": url.query,
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "REMOTE_ADDR": self.client_address[0],
               "REMOTE_USER": "fleetweb", "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.receivepack",
               "GIT_CONFIG_VALUE_0": "true", "HOME": str(self.root)}
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        length = self.headers.get("Content-Length")
        body = self.rfile.read(int(length)) if length else (self._chunked() if self.command == "POST" else b"")
        env["CONTENT_LENGTH"] = str(len(body))
        done = subprocess.run([GIT, "http-backend"], input=body, env=env, capture_output=True, timeout=120)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = done.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().strip() or b"0", 16)
            if not size:
                self.rfile.readline()
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    do_GET = _serve
    do_POST = _serve


def serve(root: Path, port: int, token: str = "") -> None:
    handler = type("Handler", (_Handler,), {"root": root, "token": token})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    print(f"gitserver: serving {root} on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    server.serve_forever()


class GitServer:
    """The server as a process of its own, and what the tests do with it: create repositories and push commits."""

    def __init__(self, state: Path, *, token: str = "", name: str = "git"):
        self.dir = state / name
        self.root = self.dir / "repos"
        self.token = token
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, repo: str) -> str:
        return f"{self.base}/{repo}.git"

    def start(self, *, timeout: float = 30) -> GitServer:
        self.root.mkdir(parents=True, exist_ok=True)
        log = self.dir / "gitserver.log"
        args = [sys.executable, "-m", "localfleet.gitserver", "--root", str(self.root), "--port", str(self.port)]
        if self.token:  # in a file only its owner reads, not on the command line
            token_file = self.dir / "token"
            token_file.touch(mode=0o600)
            token_file.write_text(self.token)
            args += ["--token-file", str(token_file)]
        self.proc = procs.started(subprocess.Popen(args, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                                   start_new_session=True))
        procs.wait_ready(self.proc, f"{self.base}/", name="gitserver", log=log, timeout=timeout)
        return self

    def stop(self) -> None:
        procs.stop(self.proc)

    def create(self, repo: str, *, branch: str = "main") -> str:
        """A new bare repository (its default branch `branch`); its URL."""
        path = self.root / f"{repo}.git"
        path.parent.mkdir(parents=True, exist_ok=True)
        _git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(path))
        return self.url(repo)

    def commit(self, repo: str, files: dict[str, str | bytes | None], *, message: str, branch: str = "main",
               tag: str = "", author: str = "Anna Example <anna@example.com>", symlinks: dict[str, str] | None = None,
               ) -> str:
        """Push one commit to `branch` of `repo` through the server (as a person would): `files` written over the
        branch's last tree (None deletes a file), `symlinks` {path: target} added as links; optionally tagged.
        Returns the commit's sha."""
        with tempfile.TemporaryDirectory(prefix="fleetweb-git-") as work:
            remote = self._pushable(repo)
            _git("init", "--quiet", f"--initial-branch={branch}", work)
            fetched = subprocess.run([GIT, "-C", work, "fetch", "--quiet", remote, branch], capture_output=True)
            if fetched.returncode == 0:
                _git("-C", work, "checkout", "--quiet", "FETCH_HEAD")
                _git("-C", work, "checkout", "--quiet", "-B", branch)
            for name, content in files.items():
                target = Path(work) / name
                if content is None:
                    target.unlink(missing_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content.encode() if isinstance(content, str) else content)
            for name, link in (symlinks or {}).items():
                target = Path(work) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.unlink(missing_ok=True)
                target.symlink_to(link)
            _git("-C", work, "add", "--all")
            name, _, email = author.partition(" <")
            env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email.rstrip(">"), "GIT_COMMITTER_NAME": name,
                   "GIT_COMMITTER_EMAIL": email.rstrip(">")}
            _git("-C", work, "commit", "--quiet", "--allow-empty", "-m", message, env=env)
            sha = _git("-C", work, "rev-parse", "HEAD").strip()
            refs = [f"HEAD:refs/heads/{branch}"] + ([f"HEAD:refs/tags/{tag}"] if tag else [])
            _git("-C", work, "push", "--quiet", remote, *refs)
            return sha

    def _pushable(self, repo: str) -> str:
        if not self.token:  # an open server refuses pushes: write straight into the repository
            return str(self.root / f"{repo}.git")
        return self.url(repo).replace("http://", f"http://git:{quote(self.token)}@")


def _git(*args: str, env: dict | None = None) -> str:
    done = subprocess.run([GIT, *args], capture_output=True, text=True,
                          env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args[:3])} failed: {done.stderr.strip()}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-file", type=Path)
    args = parser.parse_args()
    serve(args.root, args.port, args.token_file.read_text().strip() if args.token_file else "")


if __name__ == "__main__":
    main()
