"""Reading Helm charts: from a chart repository (its `index.yaml` over HTTP(S)) or an OCI registry (`oci://host/path`,
the distribution API), a version or semver range resolved to one exact version and its digest, and the archive
fetched, its digest checked, and written to a folder within the source limits (`rollouts.sources.tree`).

Every request goes through the outbound policy (purpose "source"), one host at a time (a registry's token service
on another host is checked before it is asked), with a byte cap and the source deadline. Errors are in Fleetweb's
words; the server's answers are never shown.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import time
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

import yaml
from django.conf import settings

from foundation import outbound, untrusted
from rollouts.sources.git import Auth, schemes
from rollouts.sources.tree import SourceError, extract_chart

HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json"
INDEX_MAX_BYTES = 16 * 2**20


@dataclasses.dataclass(frozen=True)
class Chart:
    name: str
    version: str
    digest: str  # sha256:… of the archive (a repository's index) or of the OCI manifest
    folder: Path


# ---------------------------------------------------------------------------------------------
# Versions: a semver range, as Helm reads one (Masterminds semver): exact, comparisons, ^, ~, x-ranges, "||"

_VERSION = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


def parse_version(text: str) -> tuple[int, int, int, tuple] | None:
    """(major, minor, patch, prerelease) of a full version, or None."""
    found = _VERSION.match(text.strip())
    if not found or found.group(2) is None or found.group(3) is None:
        return None
    pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in found.group(4).split(".")) if found.group(4) else ()
    return int(found.group(1)), int(found.group(2)), int(found.group(3)), pre


def _key(version: tuple) -> tuple:
    major, minor, patch, pre = version
    return major, minor, patch, (1,) if not pre else (0, *pre)  # a prerelease sorts before its release


def _bounds(term: str) -> list[tuple[str, tuple]]:
    """One term of a range as comparisons [(op, version)]."""
    term = term.strip()
    op = re.match(r"^(>=|<=|!=|>|<|=|\^|~>|~)?\s*", term)
    operator = op.group(1) or "" if op else ""
    rest = term[op.end():] if op else term
    found = re.match(r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:-([0-9A-Za-z.-]+))?$", rest)
    if not found:
        raise SourceError(f"'{term[:40]}' is not a version or a range of versions")
    parts = [found.group(i) for i in (1, 2, 3)]
    wild = [p is None or p in "xX*" for p in parts]
    nums = [0 if w else int(p) for p, w in zip(parts, wild, strict=True)]
    pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in found.group(4).split(".")) if found.group(4) else ()
    low = (nums[0], nums[1], nums[2], pre)
    if wild[0]:
        return [(">=", (0, 0, 0, ()))]
    if operator in ("", "=") and any(wild):  # 1.x, 1.2.x, 1, 1.2
        return [(">=", low), ("<", (nums[0] + 1, 0, 0, ()) if wild[1] else (nums[0], nums[1] + 1, 0, ()))]
    if operator == "^":
        if nums[0] > 0 or wild[1]:
            upper = (nums[0] + 1, 0, 0, ())
        elif nums[1] > 0 or wild[2]:
            upper = (0, nums[1] + 1, 0, ())
        else:
            upper = (0, 0, nums[2] + 1, ())
        return [(">=", low), ("<", upper)]
    if operator in ("~", "~>"):
        upper = (nums[0] + 1, 0, 0, ()) if wild[1] else (nums[0], nums[1] + 1, 0, ())
        return [(">=", low), ("<", upper)]
    return [(operator or "=", low)]


def _satisfies(version: tuple, bounds: list[tuple[str, tuple]]) -> bool:
    key = _key(version)
    for operator, bound in bounds:
        other = _key(bound)
        ok = {"=": key == other, "!=": key != other, ">": key > other, ">=": key >= other, "<": key < other,
              "<=": key <= other}[operator]
        if not ok:
            return False
    return True


def pick(versions: list[str], wanted: str) -> str:
    """The newest of `versions` within `wanted` (an exact version or a range); a prerelease only when the range
    names one. SourceError when none is."""
    wanted = (wanted or "*").strip()
    alternatives = [[b for term in re.split(r"\s*,\s*|\s+(?=[<>=!~^])", alt.strip()) if term for b in _bounds(term)]
                    for alt in wanted.split("||")]
    allow_pre = "-" in wanted
    best: tuple | None = None
    best_text = ""
    for text in versions:
        version = parse_version(text)
        if version is None or (version[3] and not allow_pre):
            continue
        if any(_satisfies(version, bounds) for bounds in alternatives) and (best is None or _key(version) > _key(best)):
            best, best_text = version, text
    if best is None:
        raise SourceError(f"no version of the chart matches '{wanted[:60]}'", kind="not_found")
    return best_text


# ---------------------------------------------------------------------------------------------
# HTTP under the policy


def _get(url: str, *, what: str, cap: int, headers: dict | None = None, until: float) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one GET; SourceError when refused, unreachable, or larger than `cap`."""
    parts = urlsplit(url)
    try:
        checked, pool = outbound.pool_manager(f"{parts.scheme}://{parts.netloc}{parts.path}", schemes=schemes(),
                                              what=what, purpose="source", retries=False)
    except outbound.OutboundRefused as exc:
        raise SourceError(str(exc), kind="refused") from None
    target = checked + (f"?{parts.query}" if parts.query else "")
    left = until - time.monotonic()
    if left <= 0:
        raise SourceError(f"the {what} did not answer within {settings.FLEETWEB_SOURCE_DEADLINE} s", kind="network")
    try:
        with outbound.deadline(until):
            response = pool.request("GET", target, headers=headers or {}, preload_content=False, redirect=False,
                                    timeout=left)
            body = bytearray()
            for chunk in response.stream(65536):
                body += chunk
                if len(body) > cap:
                    response.release_conn()
                    raise SourceError(f"the {what} answered more than {cap // 2**20} MiB", kind="limit")
            return response.status, {k.lower(): v for k, v in response.headers.items()}, bytes(body)
    except SourceError:
        raise
    except outbound.OutboundRefused as exc:
        raise SourceError(str(exc), kind="refused") from None
    except Exception as exc:
        host = parts.hostname or "the host"
        raise SourceError(f"{host} could not be reached for the {what} ({type(exc).__name__})",
                          kind="network") from None


def _basic(auth: Auth | None) -> dict:
    if not auth or not auth.password:
        return {}
    raw = f"{auth.username or 'fleetweb'}:{auth.password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _refused(status: int, what: str, host: str) -> SourceError:
    if status in (401, 403):
        return SourceError(f"{host} refused the credentials for the {what} (HTTP {status})", kind="auth")
    if status == 404:
        return SourceError(f"{host} has no {what} there (HTTP 404)", kind="not_found")
    return SourceError(f"{host} answered the {what} with HTTP {status}", kind="network")


# ---------------------------------------------------------------------------------------------
# Chart repositories


def repository_versions(url: str, name: str, auth: Auth | None = None) -> tuple[dict[str, dict], str]:
    """The chart's entries in the repository's index by version, and the index's digest (what a poll compares)."""
    until = time.monotonic() + settings.FLEETWEB_SOURCE_DEADLINE
    index_url = url.rstrip("/") + "/index.yaml"
    status, _headers, body = _get(index_url, what="chart repository index", cap=INDEX_MAX_BYTES,
                                  headers=_basic(auth), until=until)
    if status != 200:
        raise _refused(status, "chart repository index", urlsplit(url).hostname or "the host")
    try:
        index = yaml.load(body, Loader=untrusted.NoAliasLoader)  # noqa: S506
    except yaml.YAMLError:
        raise SourceError("the chart repository's index.yaml does not parse as YAML") from None
    if not isinstance(index, dict) or not isinstance(index.get("entries"), dict) or untrusted.too_deep(index, 12):
        raise SourceError("the chart repository's index.yaml has no entries")
    entries = index["entries"].get(name)
    if not isinstance(entries, list) or not entries:
        raise SourceError(f"the chart repository has no chart '{name[:60]}'", kind="not_found")
    by_version = {str(e.get("version")): e for e in entries if isinstance(e, dict) and e.get("version")}
    return by_version, "sha256:" + hashlib.sha256(body).hexdigest()


def from_repository(url: str, name: str, wanted: str, into: Path, auth: Auth | None = None) -> Chart:
    """The newest version of chart `name` within `wanted`, fetched from the repository at `url` and extracted."""
    until = time.monotonic() + settings.FLEETWEB_SOURCE_DEADLINE
    by_version, _digest = repository_versions(url, name, auth)
    version = pick(list(by_version), wanted)
    entry = by_version[version]
    urls = entry.get("urls") or []
    if not urls or not isinstance(urls[0], str):
        raise SourceError(f"the index names no archive for {name} {version}")
    archive_url = urljoin(url.rstrip("/") + "/", urls[0])
    same_origin = urlsplit(archive_url).netloc == urlsplit(url).netloc
    status, _headers, body = _get(archive_url, what="chart archive", cap=settings.FLEETWEB_SOURCE_MAX_BYTES,
                                  headers=_basic(auth) if same_origin else {}, until=until)
    if status != 200:
        raise _refused(status, "chart archive", urlsplit(archive_url).hostname or "the host")
    digest = hashlib.sha256(body).hexdigest()
    expected = str(entry.get("digest") or "")
    if expected and expected.removeprefix("sha256:") != digest:
        raise SourceError(f"the archive of {name} {version} does not match the digest its index gives", kind="invalid")
    return Chart(name, version, f"sha256:{digest}", extract_chart(body, into))


# ---------------------------------------------------------------------------------------------
# OCI registries


def oci_parts(reference: str) -> tuple[str, str]:
    """("https://host", "path/name") of oci://host/path/name."""
    if not reference.startswith("oci://"):
        raise SourceError("an OCI chart reference starts with oci://")
    rest = reference.removeprefix("oci://").strip("/")
    host, _, path = rest.partition("/")
    if not host or not path or not re.match(r"^[a-z0-9]+(?:[._/-][a-z0-9]+)*$", path):
        raise SourceError("an OCI chart reference is oci://host/path/name (lower case)")
    scheme = "http" if settings.FLEETWEB_SOURCE_ALLOW_HTTP and settings.FLEETWEB_SOURCE_OCI_PLAIN_HTTP else "https"
    return f"{scheme}://{host}", path


class _Registry:
    """Requests to one registry repository, answering its challenge once (basic, or a bearer token from its token
    service, itself checked by the policy)."""

    def __init__(self, reference: str, auth: Auth | None, until: float):
        self.base, self.path = oci_parts(reference)
        self.auth, self.until = auth, until
        self.header: dict = {}
        self.host = urlsplit(self.base).hostname or "the registry"

    def get(self, path: str, *, what: str, cap: int, accept: str = "") -> tuple[dict, bytes]:
        url = f"{self.base}/v2/{self.path}/{path}"
        headers = {**({"Accept": accept} if accept else {}), **self.header}
        status, answer, body = _get(url, what=what, cap=cap, headers=headers, until=self.until)
        if status == 401 and not self.header:
            self.header = self._answer(answer.get("www-authenticate", ""))
            status, answer, body = _get(url, what=what, cap=cap, headers={**headers, **self.header},
                                        until=self.until)
        if status != 200:
            raise _refused(status, what, self.host)
        return answer, body

    def _answer(self, challenge: str) -> dict:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if not self.auth or not self.auth.password:
                raise SourceError(f"{self.host} asks for credentials for this chart", kind="auth")
            return _basic(self.auth)
        if scheme.lower() != "bearer":
            raise SourceError(f"{self.host} asks for an authentication Fleetweb does not speak", kind="auth")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = fields.pop("realm", "")
        if not realm:
            raise SourceError(f"{self.host} asks for a token without saying where to get one", kind="auth")
        query = {k: v for k, v in fields.items() if k in ("service", "scope")}
        query.setdefault("scope", f"repository:{self.path}:pull")
        status, _headers, body = _get(f"{realm}?{urlencode(query)}", what="registry token service", cap=2**20,
                                      headers=_basic(self.auth), until=self.until)
        if status != 200:
            raise _refused(status, "registry token service", urlsplit(realm).hostname or "the token service")
        try:
            token = json.loads(body)
            value = token.get("token") or token.get("access_token")
        except (ValueError, AttributeError):
            value = None
        if not isinstance(value, str) or not value:
            raise SourceError(f"{self.host}'s token service gave no token", kind="auth")
        return {"Authorization": f"Bearer {value}"}


def oci_versions(reference: str, auth: Auth | None = None) -> list[str]:
    """The tags of the chart's repository."""
    registry = _Registry(reference, auth, time.monotonic() + settings.FLEETWEB_SOURCE_DEADLINE)
    _headers, body = registry.get("tags/list", what="chart's tag list", cap=INDEX_MAX_BYTES)
    try:
        tags = json.loads(body).get("tags") or []
    except (ValueError, AttributeError):
        raise SourceError(f"{registry.host} gave a tag list Fleetweb cannot read") from None
    return [tag for tag in tags if isinstance(tag, str)]


def from_oci(reference: str, wanted: str, into: Path, auth: Auth | None = None) -> Chart:
    """The newest version of the chart at `reference` within `wanted`, its manifest and layer checked against their
    digests, extracted."""
    until = time.monotonic() + settings.FLEETWEB_SOURCE_DEADLINE
    version = wanted.strip() if parse_version(wanted.strip() or "x") else pick(oci_versions(reference, auth), wanted)
    registry = _Registry(reference, auth, until)
    tag = version.replace("+", "_")  # OCI tags cannot hold "+"; Helm pushes build metadata so
    _headers, manifest_body = registry.get(f"manifests/{tag}", what="chart's manifest", cap=2**20,
                                           accept=MANIFEST_TYPES)
    manifest_digest = "sha256:" + hashlib.sha256(manifest_body).hexdigest()
    try:
        manifest = json.loads(manifest_body)
        layers = [layer for layer in manifest.get("layers", []) if layer.get("mediaType") == HELM_CHART_LAYER]
    except (ValueError, AttributeError):
        raise SourceError(f"{registry.host} gave a manifest Fleetweb cannot read") from None
    if len(layers) != 1 or not str(layers[0].get("digest", "")).startswith("sha256:"):
        raise SourceError(f"{reference.removeprefix('oci://')}:{version} is not a Helm chart")
    layer_digest = layers[0]["digest"]
    _headers, archive = registry.get(f"blobs/{layer_digest}", what="chart archive",
                                     cap=settings.FLEETWEB_SOURCE_MAX_BYTES)
    if "sha256:" + hashlib.sha256(archive).hexdigest() != layer_digest:
        raise SourceError("the chart archive does not match the digest its manifest gives")
    name = reference.rstrip("/").rsplit("/", 1)[-1]
    return Chart(name, version, manifest_digest, extract_chart(archive, into))
