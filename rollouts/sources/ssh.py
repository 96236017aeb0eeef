"""Git over SSH with a deploy key: the keys (generated here, or an unencrypted private key given), the Git server's
host key (pinned when the credentials are stored, never learnt on first use), and a Dulwich SSH vendor that speaks
SSH with Paramiko on a socket the outbound policy dialled (`outbound.connect`, inside the fetch's `deadline`), so
no `ssh` program runs and nothing is dialled the policy did not see. Errors say what failed in Fleetweb's words,
never what the server answered."""

from __future__ import annotations

import base64
import binascii
import io

from django.conf import settings

from foundation import outbound
from rollouts.sources.tree import SourceError

KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
MAX_KEY_CHARS = 16384


def generate() -> tuple[str, str]:
    """A new Ed25519 deploy key: (the private key, OpenSSH format; the public key line to give the Git host)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode() + " fleetweb-deploy-key"


def public_of(private: str) -> str:
    """The public key line of a private key (OpenSSH or PEM; Ed25519, ECDSA or RSA of 2,048 bits or more); SourceError
    naming what is wrong, never echoing the key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    text = (private or "").strip()
    if not text or len(text) > MAX_KEY_CHARS:
        raise SourceError("Give the deploy key's private key (OpenSSH or PEM format), or let Fleetweb generate one.")
    data = text.encode() + b"\n"
    key: object
    try:
        if b"BEGIN OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SourceError("The private key is protected by a passphrase: give it without one (Fleetweb encrypts "
                          "it at rest).") from None
    except (ValueError, binascii.Error):
        raise SourceError("That is not a private key Fleetweb can read (OpenSSH or PEM format).") from None
    except Exception:  # e.g. an unsupported key type
        raise SourceError("That kind of private key is not supported: use Ed25519, ECDSA or RSA.") from None
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        raise SourceError("RSA keys shorter than 2,048 bits are refused.")
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise SourceError("That kind of private key is not supported: use Ed25519, ECDSA or RSA.")
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return public.decode() + " fleetweb-deploy-key"


def host_key(text: str) -> str:
    """The Git server's host key as stored, "type base64", from what people paste: that, a `.pub` line with a
    comment, or a known_hosts line (`host type base64`, as `ssh-keyscan` prints). SourceError otherwise."""
    fields = (text or "").strip().split() if len(text or "") <= MAX_KEY_CHARS else []
    for i, word in enumerate(fields[:2]):
        if word in KEY_TYPES and i + 1 < len(fields):
            kind, blob = word, fields[i + 1]
            try:
                raw = base64.b64decode(blob, validate=True)
            except binascii.Error:
                break
            if len(raw) < 4 or raw[4:4 + int.from_bytes(raw[:4], "big")].decode(errors="replace") != kind:
                break
            return f"{kind} {blob}"
    raise SourceError("Give the Git server's host key as `ssh-keyscan HOST` prints it (e.g. "
                      "'github.com ssh-ed25519 AAAA…'), or as 'ssh-ed25519 AAAA…'.")


def _pkey(private: str):
    import paramiko

    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(private.strip() + "\n"))
        except (paramiko.SSHException, ValueError):
            continue
    raise SourceError("the deploy key could not be read: store the credentials again", kind="auth")


class _Channel:
    """What Dulwich reads and writes: one SSH session running git-upload-pack."""

    def __init__(self, transport, channel):
        self.transport, self.channel = transport, channel
        self.stdout = channel.makefile("rb")

    def read(self, n: int = -1) -> bytes:
        return self.stdout.read(n)

    def write(self, data: bytes) -> int:
        self.channel.sendall(data)
        return len(data)

    def can_read(self) -> bool:
        return self.channel.recv_ready()

    def close(self, timeout: int | None = None) -> None:
        self.channel.close()
        self.transport.close()


class Vendor:
    """Dulwich's SSH vendor for one fetch: dials the checked target, checks the pinned host key before it
    authenticates, then runs the one command Dulwich asks for (git-upload-pack)."""

    def __init__(self, target: outbound.Target, *, private_key: str, pinned_host_key: str):
        self.target, self.private_key, self.pinned = target, private_key, pinned_host_key

    def run_command(self, host, command, username=None, port=None, **_kwargs) -> _Channel:
        import paramiko

        timeout = settings.FLEETWEB_SOURCE_DEADLINE
        sock = outbound.connect(self.target, timeout=timeout)
        transport = paramiko.Transport(sock)
        try:
            transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = timeout
            transport.start_client(timeout=timeout)
            offered = transport.get_remote_server_key()
            if f"{offered.get_name()} {offered.get_base64()}" != self.pinned:
                raise SourceError(f"{self.target.host} presented another host key than the one stored with these "
                                  "credentials: if the server's key really changed, store the credentials again "
                                  "with its new key", kind="host_key")
            try:
                transport.auth_publickey(username or "git", _pkey(self.private_key))
            except paramiko.AuthenticationException:
                raise SourceError(f"{self.target.host} refused the deploy key: check that its public key is a "
                                  "deploy key of this repository", kind="auth") from None
            channel = transport.open_session(timeout=timeout)
            channel.settimeout(timeout)
            channel.exec_command(command.decode() if isinstance(command, bytes) else command)
            return _Channel(transport, channel)
        except BaseException:
            transport.close()
            raise
