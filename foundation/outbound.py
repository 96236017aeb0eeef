"""The outbound address policy: every URL Fleetweb dials (cluster API servers, kubeconfig proxy-url,
webhook receivers, OIDC issuers) is checked here, first as text and then after DNS resolution, and the
address it resolved to is the one the connection uses (`pinned`), so a name cannot resolve to a public
address for the check and to 127.0.0.1 for the call (DNS rebinding).

Refused after resolution: loopback, link-local (which holds the cloud metadata services), every major cloud's
metadata and host addresses (also as NAT64, 6to4, Teredo and IPv4-mapped forms), the unspecified address and
FLEETWEB_DENIED_NETWORKS; and private ranges (RFC 1918, CGNAT, ULA) unless allowed for the purpose of the call:
`cluster` (FLEETWEB_CLUSTER_PRIVATE_NETWORKS, default all), `idp` (FLEETWEB_IDP_PRIVATE_NETWORKS, default all) or
`channel` (FLEETWEB_CHANNEL_PRIVATE_NETWORKS, default none: a team's webhook reaches public addresses only) or
`source` (FLEETWEB_SOURCE_PRIVATE_NETWORKS, default all: Git repositories, chart repositories, OCI registries).
FLEETWEB_ALLOWED_NETWORKS wins over all of these (`make run` and the tests allow loopback for the local members).

Errors say what was refused and why, never what the other side answered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

from foundation.env import ConfigError

# Always refused unless allowed explicitly: these reach the host itself or the cloud's metadata service.
BUILTIN_DENIED = (
    "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16",  # AWS, GCP, Azure, DigitalOcean, OpenStack metadata live here
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "168.63.129.16/32",  # Azure's host (WireServer: DNS, health probes, VM agent)
    "192.0.0.192/32",  # Oracle Cloud metadata
    "::/128", "::1/128", "fe80::/10", "fd00:ec2::254/128",  # AWS metadata over IPv6
    "fd20:ce::254/128",  # GCP metadata over IPv6
)

# Private ranges: each purpose allows those of them an admin chose (settings named in PURPOSES).
PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "198.18.0.0/15", "fc00::/7")
PURPOSES = {"cluster": "FLEETWEB_CLUSTER_PRIVATE_NETWORKS", "idp": "FLEETWEB_IDP_PRIVATE_NETWORKS",
            "channel": "FLEETWEB_CHANNEL_PRIVATE_NETWORKS", "source": "FLEETWEB_SOURCE_PRIVATE_NETWORKS"}
DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22}
# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64, RFC 6052 and RFC 8215 with /96).
NAT64 = ("64:ff9b::/96", "64:ff9b:1::/96")


class OutboundRefused(ValueError):
    """A URL Fleetweb will not dial; the message says why and names the URL's host, nothing else. `kind` is
    'policy' (refused) or 'dns' (the name does not resolve, which may pass)."""

    def __init__(self, message: str, *, kind: str = "policy"):
        super().__init__(message)
        self.kind = kind


@dataclasses.dataclass(frozen=True)
class Target:
    """A checked URL: its normalized text, host, port and the address the connection must use."""

    url: str
    scheme: str
    host: str
    port: int
    address: str = ""
    purpose: str = "cluster"


def _networks(values) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{value!r} in FLEETWEB_DENIED_NETWORKS/FLEETWEB_ALLOWED_NETWORKS is not a "
                              "network (CIDR such as 10.0.0.0/8)") from None
    return nets


def denied_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return _networks([*BUILTIN_DENIED, *settings.FLEETWEB_DENIED_NETWORKS])


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return _networks(settings.FLEETWEB_ALLOWED_NETWORKS)


def private_networks_for(purpose: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The private networks an admin allowed for this purpose (clusters, identity provider, channels)."""
    return _networks(getattr(settings, PURPOSES[purpose]))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and reaches (mapped, NAT64, 6to4, Teredo's client), else None."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if any(ip in ipaddress.ip_network(net) for net in NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    return None


def address_refusal(address: str, *, purpose: str = "cluster") -> str:
    """Why this IP address may not be dialled for `purpose`, or '' when it may."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and (inner := embedded_ipv4(ip)) is not None:
        ip = inner  # judged as the IPv4 address it reaches: NAT64 of 169.254.169.254 is the metadata service
    if any(ip in net for net in allowed_networks() if net.version == ip.version):
        return ""
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if ip.is_unspecified or ip.is_multicast:
        return "not a unicast address"
    for net in denied_networks():
        if net.version == ip.version and ip in net:
            return f"in the denied network {net}"
    private = next((net for net in _networks(PRIVATE) if net.version == ip.version and ip in net), None)
    if private is not None and not any(ip in net for net in private_networks_for(purpose) if net.version == ip.version):
        return (f"in the private network {private}, which is not allowed for {purpose} URLs "
                f"({PURPOSES[purpose]})")
    return ""


def check_url(url: str, *, schemes: tuple[str, ...] = ("https",), what: str = "URL",
              purpose: str = "cluster") -> Target:
    """The URL as text: scheme, host, no credentials, query or fragment; the path normalized (a proxied API
    server has a path prefix such as /k8s/clusters/c-1). Raises OutboundRefused."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown outbound purpose {purpose!r}")
    text = (url or "").strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        raise OutboundRefused(f"The {what} is not a valid URL.") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise OutboundRefused(f"The {what} must start with {' or '.join(s + '://' for s in schemes)}.")
    if any(ch in text for ch in "\x00\r\n\t "):
        raise OutboundRefused(f"The {what} contains spaces or control characters.")
    try:
        port = parts.port
    except ValueError:
        raise OutboundRefused(f"The {what} has an invalid port.") from None
    if not parts.hostname:
        raise OutboundRefused(f"The {what} has no host.")
    if parts.username is not None or parts.password is not None:
        raise OutboundRefused(f"The {what} may not carry a user name or password.")
    if parts.query or "?" in text:
        raise OutboundRefused(f"The {what} may not have a query string (?…).")
    if parts.fragment or "#" in text:
        raise OutboundRefused(f"The {what} may not have a fragment (#…).")
    segments = [s for s in parts.path.split("/") if s]
    if any(s in (".", "..") or "%" in s for s in segments):
        raise OutboundRefused(f"The {what} path may not contain '.', '..' or percent-escapes.")
    path = "/" + "/".join(segments) if segments else ""
    host = parts.hostname.lower().rstrip(".")
    port = port or DEFAULT_PORTS.get(scheme, 80)
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return Target(url=urlunsplit((scheme, netloc, path, "", "")), scheme=scheme, host=host, port=port,
                  purpose=purpose)


def resolve(target: Target, *, what: str = "URL") -> Target:
    """Resolve the host; refuse when any address it resolves to is refused; pin the first one."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise OutboundRefused(f"DNS lookup failed for '{target.host}'", kind="dns") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        reason = address_refusal(address, purpose=target.purpose)
        if reason:
            shown = "" if address == target.host else f" resolves to {address}, which"
            raise OutboundRefused(f"The {what} host '{target.host}'{shown} is {reason}; Fleetweb does not dial it "
                                  "(FLEETWEB_ALLOWED_NETWORKS can allow it).")
    return dataclasses.replace(target, address=addresses[0])


def check_and_resolve(url: str, *, schemes: tuple[str, ...] = ("https",), what: str = "URL",
                      purpose: str = "cluster") -> Target:
    return resolve(check_url(url, schemes=schemes, what=what, purpose=purpose), what=what)


# ---------------------------------------------------------------------------------------------
# Total deadlines: a per-read timeout does not bound a call (an answer trickled a byte at a time never times out),
# so a call made inside `deadline(at)` has every connection it uses shut down at `at` by one watchdog thread; the
# blocked read then fails at once and the caller sees `watch.fired`.


class Watch:
    """The connections one call used, shut down if the call is still running at `at` (time.monotonic())."""

    def __init__(self, at: float):
        self.at = at
        self.fired = False
        self.done = False
        self._connections: list = []
        self._lock = threading.Lock()

    def add(self, connection) -> None:
        with self._lock:
            self._connections.append(connection)
            fired = self.fired
        if fired:
            _shut(connection)

    def fire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.fired = True
            connections = list(self._connections)
        for connection in connections:
            _shut(connection)


def _shut(connection) -> None:
    sock = connection if isinstance(connection, socket.socket) else getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One thread per process firing expired watches in deadline order."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watch]] = []
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, watch: Watch) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._heap, self._pid = [], os.getpid()  # a forked worker starts its own
                self._thread = threading.Thread(target=self._run, name="outbound-watchdog", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (watch.at, self._seq, watch))
            self._seq += 1
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                at, _seq, watch = self._heap[0]
                left = at - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
            watch.fire()


_watchdog = _Watchdog()
_current = threading.local()


@contextlib.contextmanager
def deadline(at: float) -> Iterator[Watch]:
    """Calls made through pinned connections in this thread inside the block are cut off at `at`."""
    watch = Watch(at)
    previous = getattr(_current, "watch", None)
    _current.watch = watch
    _watchdog.add(watch)
    try:
        yield watch
    finally:
        watch.done = True
        _current.watch = previous


def connect(target: Target, *, timeout: float) -> socket.socket:
    """A TCP connection to a checked, resolved target (`check_and_resolve`), at the address that was checked, for
    protocols that are not HTTP (Git over SSH); cut off with the other connections of the current `deadline`."""
    if not target.address:
        raise ValueError("connect() needs a resolved target")
    sock = socket.create_connection((target.address, target.port), timeout=timeout)
    watch = getattr(_current, "watch", None)
    if watch is not None:
        watch.add(sock)
    return sock


# ---------------------------------------------------------------------------------------------
# Dialling: each new connection to a checked host resolves it, checks every address and dials the checked one
# (TLS still verifies the name), so a name cannot pass the check and then resolve to 127.0.0.1 (DNS rebinding).


def _pinning_connection(base):
    class Pinned(base):
        def _new_conn(self):
            self._dns_host = self._fleetweb_address
            return super()._new_conn()

        def request(self, *args, **kwargs):
            watch = getattr(_current, "watch", None)
            if watch is not None:
                watch.add(self)  # shut at the call's deadline, whatever phase it is in then
            return super().request(*args, **kwargs)

    Pinned.__name__ = f"Pinned{base.__name__}"
    return Pinned


def _pinning_pool(pool_cls, hosts: dict[str, tuple[str, str]]):
    connection_cls = _pinning_connection(pool_cls.ConnectionCls)

    class PinnedPool(pool_cls):
        ConnectionCls = connection_cls

        def _new_conn(self):
            conn = super()._new_conn()
            host = (conn.host or "").lower().rstrip(".")
            checked = hosts.get(host)
            if checked is None:
                # Only checked hosts are dialled: a redirect or any other host is not followed.
                raise OutboundRefused(f"The host '{host}' was not checked by the outbound policy; not dialled.")
            what, purpose = checked
            conn._fleetweb_address = resolve(Target(url="", scheme="", host=host, port=conn.port, purpose=purpose),
                                             what=what).address
            return conn

    return PinnedPool


def pin_pool_manager(pool_manager: Any, *targets: tuple[Target, str]) -> Any:
    """Make this urllib3 PoolManager (or ProxyManager) dial only the checked targets ((target, what) pairs), each
    at an address resolved and checked when the connection is made. OutboundRefused comes out of the request."""
    import urllib3

    hosts = {target.host: (what, target.purpose) for target, what in targets}
    pool_manager.pool_classes_by_scheme = {
        "http": _pinning_pool(urllib3.HTTPConnectionPool, hosts),
        "https": _pinning_pool(urllib3.HTTPSConnectionPool, hosts),
    }
    return pool_manager


def pool_manager(url: str, *, schemes: tuple[str, ...] = ("https",), what: str = "URL", purpose: str = "cluster",
                 **kwargs) -> tuple[str, Any]:
    """(checked URL, a urllib3 PoolManager that dials only its host under the policy)."""
    import urllib3

    target = check_url(url, schemes=schemes, what=what, purpose=purpose)
    return target.url, pin_pool_manager(urllib3.PoolManager(**kwargs), (target, what))


def requests_session(*urls: str, what: str = "URL", schemes: tuple[str, ...] = ("https",),
                     verify: bool | str = True, session: Any = None, purpose: str = "idp") -> Any:
    """A requests Session (or the given one, e.g. an OAuth client's) that dials only the hosts of `urls`, each
    at an address checked by the policy when the connection is made; no redirects, no proxies from the
    environment. OutboundRefused (inside requests' ConnectionError) comes out of a refused call."""
    import requests
    from requests.adapters import HTTPAdapter

    targets = [(check_url(url, schemes=schemes, what=what, purpose=purpose), what) for url in urls]
    session = session if session is not None else requests.Session()
    adapter = HTTPAdapter(max_retries=0)
    pin_pool_manager(adapter.poolmanager, *targets)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.verify = verify
    session.trust_env = False
    session.max_redirects = 0
    return session
