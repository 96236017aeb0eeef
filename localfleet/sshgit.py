"""A real Git server over SSH for the tests of sources read with a deploy key: OpenSSH's own `sshd` (Debian's
openssh-server) on a loopback port, with a host key of its own, only public-key logins, one authorized key file and
every session forced through `git-shell` (so a key can run git-upload-pack and nothing else), serving the bare
repositories of a `GitServer` (the HTTP one) at their paths on disk.

    server = SshGitServer(state_dir, git_server.root).start()
    server.authorize(public_key_line)          # a deploy key the server accepts
    server.url("payments/deploy")              # ssh://USER@127.0.0.1:PORT/…/payments/deploy.git
    server.host_key                            # "ssh-ed25519 AAAA…", as ssh-keyscan prints it
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path

from localfleet import procs
from localfleet.member import free_port

SSHD = "/usr/sbin/sshd"


def available() -> bool:
    return os.path.exists(SSHD) and shutil.which("git-shell") is not None and shutil.which("ssh-keygen") is not None


class SshGitServer:
    def __init__(self, state: Path, root: Path):
        self.dir = state / "sshd"
        self.root = root
        self.port = free_port()
        self.user = getpass.getuser()
        self.proc: subprocess.Popen | None = None

    @property
    def host_key(self) -> str:
        kind, blob = (self.dir / "host_ed25519.pub").read_text().split()[:2]
        return f"{kind} {blob}"

    def url(self, repo: str) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{self.root / (repo + '.git')}"

    def authorize(self, public_key: str) -> None:
        with (self.dir / "authorized_keys").open("a") as keys:
            keys.write(public_key.strip() + "\n")

    def start(self, *, timeout: float = 30) -> SshGitServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        host_key = self.dir / "host_ed25519"
        if not host_key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        (self.dir / "authorized_keys").touch(mode=0o600)
        config = self.dir / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", "PidFile none",
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}", "StrictModes no", "UsePAM no",
            "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password", f"AllowUsers {self.user}", "AllowTcpForwarding no",
            "X11Forwarding no", "PermitTTY no", "LogLevel VERBOSE",
            # Every session runs git-shell, which runs git-upload-pack and git-receive-pack and nothing else.
            'ForceCommand git-shell -c "$SSH_ORIGINAL_COMMAND"', ""]))
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
        log = self.dir / "sshd.log"
        self.proc = procs.started(subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log.open("ab"),
                                                   stderr=subprocess.STDOUT, start_new_session=True))
        procs.wait_port(self.proc, "127.0.0.1", self.port, name="sshd", log=log, timeout=timeout)
        return self

    def stop(self) -> None:
        procs.stop(self.proc)
