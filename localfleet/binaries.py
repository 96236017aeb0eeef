"""Build (once per machine) and locate the control-plane binaries of the local member clusters.

Each binary comes from a pinned Go module under `localfleet/go/` and is cached in
`~/.cache/fleetweb/bin/<module>-<pin hash>/`, so only the first build on a machine pays; a
changed go.mod or go.sum gets a new folder instead of a stale binary.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

GO_DIR = Path(__file__).resolve().parent / "go"

# The default apiserver release, and the controller-manager and scheduler of every member whose apiserver is at
# most one minor newer; APISERVER_VERSIONS lists each apiserver release a member may run. Upstream's skew policy
# lets those components be one minor behind the apiserver, never two, so a newer apiserver brings its own
# (`component_version`): v1.36 apiservers pair with v1.35 components, v1.37 ones with v1.37 components.
KUBE_VERSION = "v1.35.4"
APISERVER_VERSIONS = ("v1.35.4", "v1.36.3", "v1.37.2")
ETCD_MODULE = "etcd-v3.6.16"
KWOK_MODULE = "kwok-v0.7.0"
# The OpenID Connect provider the single sign-on tests log in through (tests/sso/).
HYDRA_MODULE = "hydra-v2.3.0"
# The Prometheus server the metrics end-to-end test scrapes Fleetweb with (tests/e2e/test_metrics.py); built
# with static targets only (`remove_all_sd`), which halves its build.
PROMETHEUS_MODULE = "prometheus-v0.316.0"
# Application sources: the renderers Fleetweb runs (`helm template`, `kustomize build`; FLEETWEB_HELM and
# FLEETWEB_KUSTOMIZE point at these in `make run` and the tests), and the OCI registry the chart tests push to.
HELM_MODULE = "helm-v4.3.2"
KUSTOMIZE_MODULE = "kustomize-v5.8.1"
REGISTRY_MODULE = "registry-v0.22.1"


class BuildError(RuntimeError):
    """A binary could not be built; the message carries the tail of the Go output."""


@dataclasses.dataclass(frozen=True)
class Binary:
    """One command to build from one pinned module."""

    name: str
    module: str  # folder under localfleet/go/
    package: str
    ldflags: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    cgo: bool = False  # Hydra's in-memory SQLite needs cgo (a C compiler); everything else builds without

    @property
    def module_dir(self) -> Path:
        return GO_DIR / self.module

    def pin_hash(self) -> str:
        """Short digest of the module's pins: a changed go.mod/go.sum means a new cache folder."""
        digest = hashlib.sha256()
        for name in ("go.mod", "go.sum"):
            digest.update((self.module_dir / name).read_bytes())
        if self.tags or self.cgo:
            digest.update(repr((self.tags, self.cgo)).encode())
        if self.ldflags:
            digest.update(repr(self.ldflags).encode())
        return digest.hexdigest()[:10]

    def path(self) -> Path:
        return cache_dir() / "bin" / f"{self.module}-{self.pin_hash()}" / self.name


def cache_dir() -> Path:
    """Root of Fleetweb's machine-wide cache (`FLEETWEB_CACHE_DIR`, default ~/.cache/fleetweb)."""
    return Path(os.environ.get("FLEETWEB_CACHE_DIR") or Path.home() / ".cache" / "fleetweb")


def _kube_ldflags(version: str) -> tuple[str, ...]:
    """Version stamps so that `/version` reports the real release, as upstream's build does."""
    major, minor, _ = version.removeprefix("v").split(".")
    info = json.loads(_module_info("k8s.io/kubernetes", version))
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate={info.get('Time', '')}",
        ]
    return tuple(flags)


def _module_info(path: str, version: str) -> str:
    """The proxy's .info for a module version (already in the module cache after `go mod download`)."""
    gomodcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    info = Path(gomodcache) / "cache" / "download" / path / "@v" / f"{version}.info"
    if not info.exists():
        return "{}"
    return info.read_text()


def kube_binary(name: str, version: str) -> Binary:
    """A kube-* command of one release."""
    return Binary(name, f"kube-{version}", f"k8s.io/kubernetes/cmd/{name}")


def _minor(version: str) -> int:
    return int(version.removeprefix("v").split(".")[1])


def component_version(apiserver_version: str) -> str:
    """The kube-controller-manager and kube-scheduler release a member with this apiserver runs."""
    return KUBE_VERSION if _minor(apiserver_version) - _minor(KUBE_VERSION) <= 1 else apiserver_version


def all_binaries() -> list[Binary]:
    """Every binary a member cluster may need, cheapest first."""
    binaries = [
        Binary("etcd", ETCD_MODULE, "."),
        Binary("kwok", KWOK_MODULE, "sigs.k8s.io/kwok/cmd/kwok"),
        Binary("hydra", HYDRA_MODULE, "github.com/ory/hydra/v2", tags=("sqlite", "sqlite_omit_load_extension"),
               cgo=True),
        Binary("prometheus", PROMETHEUS_MODULE, "github.com/prometheus/prometheus/cmd/prometheus",
               tags=("remove_all_sd",)),
        Binary("registry", REGISTRY_MODULE, "."),
        Binary("kustomize", KUSTOMIZE_MODULE, "sigs.k8s.io/kustomize/kustomize/v5"),
        Binary("helm", HELM_MODULE, "helm.sh/helm/v4/cmd/helm",
               ldflags=(f"-X helm.sh/helm/v4/internal/version.version={HELM_MODULE.removeprefix('helm-')}",)),
    ]
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        binaries.append(kube_binary(name, KUBE_VERSION))
    for version in APISERVER_VERSIONS:
        if version != KUBE_VERSION:
            binaries.append(kube_binary("kube-apiserver", version))
        if component_version(version) != KUBE_VERSION:
            binaries += [kube_binary(name, version) for name in ("kube-controller-manager", "kube-scheduler")]
    return binaries


def build(binary: Binary, *, out=sys.stderr) -> Path:
    """Build one binary into the cache unless it is already there; return its path."""
    target = binary.path()
    if target.exists():
        return target
    if shutil.which("go") is None:
        raise BuildError("the Go toolchain ('go') is not on PATH; local member clusters are built from Go modules")
    ldflags = ["-s", "-w", *binary.ldflags]
    if binary.name.startswith("kube-"):
        subprocess.run(["go", "mod", "download", "k8s.io/kubernetes"], cwd=binary.module_dir, check=False,
                       capture_output=True)
        ldflags += _kube_ldflags(binary.module.removeprefix("kube-"))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{binary.name}.{os.getpid()}.partial")
    env = {**os.environ, "CGO_ENABLED": "1" if binary.cgo else "0", "GOFLAGS": "-buildvcs=false -mod=readonly"}
    tags = ["-tags", ",".join(binary.tags)] if binary.tags else []
    cmd = ["go", "build", "-v", "-trimpath", *tags, "-ldflags", " ".join(ldflags), "-o", str(partial),
           binary.package]
    print(f"localfleet: building {binary.name} from {binary.module} (first time on this machine)", file=out, flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=binary.module_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    tail: list[str] = []
    packages = 0
    last_report = started
    assert proc.stdout is not None
    for line in proc.stdout:
        packages += 1
        tail = (tail + [line.rstrip()])[-30:]
        if time.monotonic() - last_report > 30:
            last_report = time.monotonic()
            print(f"localfleet:   {binary.name}: {packages} packages compiled, {last_report - started:.0f}s",
                  file=out, flush=True)
    if proc.wait() != 0:
        partial.unlink(missing_ok=True)
        raise BuildError(f"go build of {binary.name} in {binary.module_dir} failed:\n" + "\n".join(tail))
    partial.rename(target)
    print(f"localfleet: built {binary.name} in {time.monotonic() - started:.0f}s -> {target}", file=out, flush=True)
    return target


def buildable() -> bool:
    """Every binary is cached, or Go is here to build what is missing."""
    return shutil.which("go") is not None or all(b.path().exists() for b in all_binaries())


def ensure_all(*, out=sys.stderr) -> dict[str, Path]:
    """Build whatever is missing; return {module/name: path}."""
    return {f"{b.module}/{b.name}": build(b, out=out) for b in all_binaries()}


def path_of(name: str, version: str | None = None) -> Path:
    """Path of a built binary, building it first if needed."""
    if name.startswith("kube-"):
        return build(kube_binary(name, version or KUBE_VERSION))
    binary = next(b for b in all_binaries() if b.name == name)
    return build(binary)
