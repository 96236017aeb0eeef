"""A real Prometheus server (built from its Go module into the binary cache like the members) scraping one target,
for the metrics end-to-end test and for trying dashboards locally:

    prom = Prometheus(state_dir, target="127.0.0.1:8000", token="...").start()
    prom.query('fleetweb_cluster_up{cluster="aws-eu-west"}')  # -> [{"metric": {...}, "value": [ts, "1"]}]
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

from localfleet import binaries, procs
from localfleet.member import free_port


class Prometheus:
    def __init__(self, state: Path, *, target: str, token: str = "", interval: str = "1s"):
        self.dir = state
        self.target, self.token, self.interval = target, token, interval
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        job: dict[str, object] = {
            "job_name": "fleetweb", "scrape_interval": self.interval, "scrape_timeout": self.interval,
            "metrics_path": "/metrics", "static_configs": [{"targets": [self.target]}]}
        if self.token:
            (self.dir / "token").write_text(self.token)
            job["authorization"] = {"type": "Bearer", "credentials_file": str(self.dir / "token")}
        return json.dumps({"global": {"scrape_interval": self.interval}, "scrape_configs": [job]})  # YAML ⊃ JSON

    def start(self, *, timeout: float = 60) -> Prometheus:
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "prometheus.yml"
        config.write_text(self.config())
        log = (self.dir / "prometheus.log").open("ab")
        self.proc = procs.started(subprocess.Popen(
            [str(binaries.path_of("prometheus")), f"--config.file={config}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        procs.wait_ready(self.proc, f"{self.url}/-/ready", name="prometheus", log=self.dir / "prometheus.log",
                         timeout=timeout)
        return self

    def stop(self) -> None:
        procs.stop(self.proc)

    def _get(self, path: str, **params) -> dict:
        with urllib.request.urlopen(f"{self.url}{path}?{urllib.parse.urlencode(params)}", timeout=10) as answer:
            body = json.loads(answer.read())
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus answered {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """An instant query through the HTTP API (/api/v1/query)."""
        return self._get("/api/v1/query", query=expr)["result"]

    def targets(self) -> list[dict]:
        return self._get("/api/v1/targets")["activeTargets"]
