"""Where the application-source tests get Helm charts from, as real servers on loopback, and the `helm` that packs
and publishes them (built from its Go module into the binary cache, like the members):

    repo = ChartRepository(state_dir).start()       # static files: index.yaml and the archives, as `helm repo index`
    repo.publish(chart_dir)                          # `helm package` + `helm repo index`  -> its URL
    registry = Registry(state_dir, user="u", password="p").start()   # an OCI registry (go-containerregistry's)
    registry.push(chart_dir)                         # `helm package` + `helm push`        -> oci://127.0.0.1:PORT/charts/NAME
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from localfleet import binaries, procs
from localfleet.member import free_port


def helm(*args: str, cwd: Path | None = None, home: Path | None = None) -> str:
    """Run the cached `helm` with its own config folders; its output, RuntimeError with its error otherwise."""
    with tempfile.TemporaryDirectory(prefix="localfleet-helm-") as scratch:
        base = home or Path(scratch)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(base), "HELM_CACHE_HOME": str(base / "cache"),
               "HELM_CONFIG_HOME": str(base / "config"), "HELM_DATA_HOME": str(base / "data")}
        done = subprocess.run([str(binaries.path_of("helm")), *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout


def package(chart: Path, into: Path) -> Path:
    """`helm package` of the chart folder; the archive's path."""
    into.mkdir(parents=True, exist_ok=True)
    out = helm("package", str(chart), "--destination", str(into))
    return Path(out.strip().rsplit(": ", 1)[-1])


class ChartRepository:
    """A Helm chart repository: a folder of archives and its index.yaml, served by a static file server."""

    def __init__(self, state: Path, *, name: str = "charts"):
        self.dir = state / name
        self.files = self.dir / "www"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30) -> ChartRepository:
        self.files.mkdir(parents=True, exist_ok=True)
        (self.files / "index.yaml").write_text("apiVersion: v1\nentries: {}\n")
        log = self.dir / "charts.log"
        self.proc = procs.started(subprocess.Popen(
            [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1", "--directory",
             str(self.files)], stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True))
        procs.wait_ready(self.proc, f"{self.url}/index.yaml", name="chart repository", log=log, timeout=timeout)
        return self

    def stop(self) -> None:
        procs.stop(self.proc)

    def publish(self, chart: Path) -> str:
        """Package the chart into the repository and index it again (as a release pipeline does)."""
        package(chart, self.files)
        helm("repo", "index", str(self.files), "--url", self.url)
        return self.url


class Registry:
    """An OCI registry (go-containerregistry's, built into the binary cache), optionally asking for basic auth."""

    def __init__(self, state: Path, *, user: str = "", password: str = "", name: str = "registry"):
        self.dir = state / name
        self.user, self.password = user, password
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30) -> Registry:
        self.dir.mkdir(parents=True, exist_ok=True)
        log = self.dir / "registry.log"
        args = [str(binaries.path_of("registry")), "-listen", self.host, "-dir", str(self.dir / "blobs")]
        if self.user:
            args += ["-user", self.user, "-password", self.password]
        self.proc = procs.started(subprocess.Popen(args, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                                   start_new_session=True, env={**os.environ}))
        procs.wait_port(self.proc, "127.0.0.1", self.port, name="registry", log=log, timeout=timeout)
        return self

    def stop(self) -> None:
        procs.stop(self.proc)

    def push(self, chart: Path, *, path: str = "charts") -> str:
        """Package the chart and push it as `helm push` does; the chart's oci:// reference."""
        with tempfile.TemporaryDirectory(prefix="localfleet-chart-") as folder:
            archive = package(chart, Path(folder))
            home = Path(folder) / "home"
            if self.user:
                helm("registry", "login", self.host, "--username", self.user, "--password", self.password,
                     "--plain-http", home=home)
            helm("push", str(archive), f"oci://{self.host}/{path}", "--plain-http", home=home)
        name = archive.name.rsplit("-", 1)[0]
        return f"oci://{self.host}/{path}/{name}"
