"""The Helm chart (charts/fleetweb): `helm lint` and `helm template` for the default values and two other value sets,
what every rendered object promises (non-root read-only containers, secrets only by reference, the owner role's URL
in the migration hook alone, every queue served), a typo in values refused by the schema, every object accepted by a
server-side dry run on a real member of each Kubernetes minor the project runs, and `helm install` then `helm upgrade`
into a real member (its pods are simulated: this checks hooks, ordering and objects, not the image)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.dynamic import DynamicClient

from localfleet import binaries
from localfleet.charts import helm
from tests.conftest import wait_for

pytestmark = pytest.mark.e2e

CHART = Path(__file__).resolve().parents[2] / "charts" / "fleetweb"
VALUE_SETS = {"default": None, "small": CHART / "ci" / "small-values.yaml", "large": CHART / "ci" / "large-values.yaml"}
QUEUES = {"sync", "reports", "default", "rollouts", "notify"}
POD_KINDS = ("Deployment", "Job")


def _template(values: Path | None, *extra: str) -> list[dict]:
    args = ["template", "fw", str(CHART), "--namespace", "fleetweb", *(["-f", str(values)] if values else []), *extra]
    return [d for d in yaml.safe_load_all(helm(*args)) if d]


def _pods(objects: list[dict]) -> list[tuple[dict, dict]]:
    return [(o, o["spec"]["template"]["spec"]) for o in objects if o["kind"] in POD_KINDS]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_the_chart_lints_and_renders_what_it_promises(name):
    values = VALUE_SETS[name]
    helm("lint", str(CHART), "--strict", *(["-f", str(values)] if values else []))
    objects = _template(values)
    kinds = [o["kind"] for o in objects]
    assert "Secret" not in kinds and "ConfigMap" not in kinds, "secrets are referenced, never rendered"
    pods = _pods(objects)
    assert pods
    for owner, pod in pods:
        where = f"{owner['kind']}/{owner['metadata']['name']}"
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False, where
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"] and container["resources"]["requests"], where
            for env in container["env"]:
                if any(word in env["name"] for word in ("SECRET", "PASSWORD", "TOKEN", "DATABASE_URL", "REDIS_URL",
                                                        "ENCRYPTION")):
                    assert "valueFrom" in env and "value" not in env, f"{where}: {env['name']} is not by reference"
    owner_url = [o["metadata"]["name"] for o, pod in pods
                 if any(e["name"] == "FLEETWEB_MIGRATE_DATABASE_URL" for c in pod["containers"] for e in c["env"])]
    migrate = [o for o in objects if o["kind"] == "Job"]
    assert owner_url == [j["metadata"]["name"] for j in migrate] == ["fw-fleetweb-migrate"], \
        "the owner role's URL goes to the migration Job alone"
    assert migrate[0]["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    served = set()
    for _owner, pod in pods:
        command = pod["containers"][0]["command"]
        if command[:4] == ["celery", "-A", "fleetweb", "worker"]:
            served |= set(command[command.index("-Q") + 1].split(","))
    assert served == QUEUES
    for owner, pod in pods:  # the kubelet's probes are answered: localhost is an allowed host
        hosts = next(e["value"] for e in pod["containers"][0]["env"] if e["name"] == "FLEETWEB_ALLOWED_HOSTS")
        assert "localhost" in hosts.split(","), owner["metadata"]["name"]


def test_the_large_set_routes_agents_to_the_gateway_and_scales_what_it_says():
    objects = {(o["kind"], o["metadata"]["name"]): o for o in _template(VALUE_SETS["large"])}
    ingress = objects[("Ingress", "fw-fleetweb")]
    rules = {r["host"]: [(p["path"], p["backend"]["service"]["name"]) for p in r["http"]["paths"]]
             for r in ingress["spec"]["rules"]}
    assert rules == {"agents.fleetweb.example.com": [("/agent/v1/", "fw-fleetweb-gateway")],
                     "fleetweb.example.com": [("/", "fw-fleetweb-web")]}
    assert objects[("HorizontalPodAutoscaler", "fw-fleetweb-web")]["spec"]["maxReplicas"] == 12
    assert objects[("Deployment", "fw-fleetweb-worker-sync")]["spec"]["replicas"] == 4
    web_env = {e["name"]: e.get("value") for e in
               objects[("Deployment", "fw-fleetweb-web")]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert web_env["FLEETWEB_AGENT_URL"] == "https://agents.fleetweb.example.com"
    workers = objects[("NetworkPolicy", "fw-fleetweb-workers")]["spec"]
    assert workers["ingress"] == [] and {"ipBlock": {"cidr": "192.168.11.0/24"}} in workers["egress"][2]["to"]
    assert objects[("Deployment", "fw-fleetweb-beat")]["spec"]["replicas"] == 2


def test_prometheus_scrapes_web_and_every_worker_pod_where_the_operator_exists():
    """Web's /metrics through its Service; each worker pod's own port (its pool's task metrics) through a headless
    Service that selects exactly the worker pods; the bearer token from the Secret; the monitoring namespaces let in
    on that port only. Without the operator's API there is no ServiceMonitor."""
    assert not [o for o in _template(None) if o["kind"] == "ServiceMonitor"]
    objects = {(o["kind"], o["metadata"]["name"]): o
               for o in _template(None, "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")}
    monitors = {name: o["spec"] for (kind, name), o in objects.items() if kind == "ServiceMonitor"}
    assert set(monitors) == {"fw-fleetweb", "fw-fleetweb-workers"}
    service = objects[("Service", "fw-fleetweb-workers")]
    assert service["spec"]["clusterIP"] == "None"
    labels = service["metadata"]["labels"]
    assert monitors["fw-fleetweb-workers"]["selector"]["matchLabels"].items() <= labels.items()
    assert not monitors["fw-fleetweb"]["selector"]["matchLabels"].items() <= labels.items()
    for spec in monitors.values():
        assert spec["endpoints"][0]["bearerTokenSecret"]["key"] == "FLEETWEB_METRICS_TOKEN"
    assert monitors["fw-fleetweb-workers"]["endpoints"][0]["port"] == "metrics"
    selected = {o["metadata"]["name"] for o, pod in _pods(list(objects.values()))
                if service["spec"]["selector"].items() <= o["spec"]["template"]["metadata"]["labels"].items()}
    workers = {name for (kind, name) in objects if kind == "Deployment" and "-worker-" in name}
    assert selected == workers and len(workers) == 3
    for name in workers:
        container = objects[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["FLEETWEB_WORKER_METRICS_PORT"] == "9808"
        assert container["ports"] == [{"name": "metrics", "containerPort": 9808}]
    policy = objects[("NetworkPolicy", "fw-fleetweb-worker-metrics")]["spec"]
    assert policy["podSelector"]["matchLabels"] == service["spec"]["selector"]
    assert policy["ingress"] == [{"from": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}], "ports": [{"protocol": "TCP", "port": 9808}]}]


@pytest.mark.parametrize(("setting", "expected"), [
    (["--set", "webb.replicas=3"], "additional properties 'webb' not allowed"),
    (["--set", "config.FLEETWEB_SECRET_KEY=in-values"], "'not' failed"),
    (["--set", "beat.replicas=0"], "minimum"),
    (["--set-json", 'workers=[{"name":"all","queues":["sync"],"concurrency":4,"replicas":1}]'],
     'no group serves the queue "reports"'),
])
def test_a_mistake_in_values_fails_the_install_saying_where(setting, expected):
    with pytest.raises(RuntimeError) as refused:
        _template(None, *setting)
    assert expected in str(refused.value)


def _namespace(api_client, name: str) -> None:
    core = k8s.CoreV1Api(api_client)
    try:
        core.create_namespace({"metadata": {"name": name}})
    except k8s.ApiException as exc:
        if exc.status != 409:
            raise


def test_every_rendered_object_passes_a_server_side_dry_run_on_each_minor(localfleet_members):
    minors = {}
    for handle in localfleet_members.values():
        minors.setdefault(handle.version.rsplit(".", 1)[0], handle)
    assert {"v1.35", "v1.36", "v1.37"} <= set(minors), f"members of each minor, got {sorted(minors)}"
    for minor, handle in sorted(minors.items()):
        with handle.admin_api() as api_client:
            _namespace(api_client, "fleetweb")
            dynamic = DynamicClient(api_client)
            for values in VALUE_SETS.values():
                for obj in _template(values):
                    resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
                    namespace = "fleetweb" if resource.namespaced else None
                    dynamic.create(resource, body=obj, namespace=namespace, dry_run="All",
                                   query_params=[("fieldValidation", "Strict")])
                # a refused object is an exception above; nothing was stored
            assert not k8s.AppsV1Api(api_client).list_namespaced_deployment("fleetweb").items, minor


def test_helm_installs_into_a_member_runs_its_migration_hook_first_and_upgrades(localfleet_members, tmp_path):
    handle = next(iter(localfleet_members.values()))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(handle.admin_kubeconfig))
    kubeconfig.chmod(0o600)
    with handle.admin_api() as api_client:
        _namespace(api_client, "fleetweb-install")
        core = k8s.CoreV1Api(api_client)
        core.create_namespaced_secret("fleetweb-install", {"metadata": {"name": "fleetweb"}, "stringData": {
            "DATABASE_URL": "postgres://fleetweb:x@db:5432/fleetweb",
            "FLEETWEB_MIGRATE_DATABASE_URL": "postgres://fleetweb_owner:x@db:5432/fleetweb",
            "REDIS_URL": "redis://:x@redis:6379/0", "FLEETWEB_SECRET_KEY": "k" * 50,
            "FLEETWEB_ENCRYPTION_KEYS": "A" * 43 + "="}})
        base = ["--kubeconfig", str(kubeconfig), "--namespace", "fleetweb-install"]
        try:
            helm("install", "fw", str(CHART), *base, "--wait=false", "--timeout", "180s")
            apps = k8s.AppsV1Api(api_client)
            names = {d.metadata.name for d in apps.list_namespaced_deployment("fleetweb-install").items}
            assert {"fw-fleetweb-web", "fw-fleetweb-gateway", "fw-fleetweb-beat", "fw-fleetweb-worker-sync",
                    "fw-fleetweb-worker-reports", "fw-fleetweb-worker-default"} <= names
            # the hook ran, and succeeded, before the release's objects were made (deleted on success)
            jobs = k8s.BatchV1Api(api_client).list_namespaced_job("fleetweb-install").items
            assert not [j.metadata.name for j in jobs if j.metadata.name.endswith("-migrate")]
            events = core.list_namespaced_event("fleetweb-install").items
            assert any(e.involved_object.kind == "Job" and e.involved_object.name == "fw-fleetweb-migrate"
                       for e in events), "the migration Job ran"
            helm("upgrade", "fw", str(CHART), *base, "--set", "beat.replicas=1", "--wait=false", "--timeout", "180s")
            wait_for(lambda: apps.read_namespaced_deployment("fw-fleetweb-beat", "fleetweb-install").spec.replicas == 1,
                     timeout=30, what="the upgrade's changed value")
            history = helm("history", "fw", *base, "-o", "yaml")
            assert [r["status"] for r in yaml.safe_load(history)] == ["superseded", "deployed"]
        finally:
            subprocess.run([str(binaries.path_of("helm")), "uninstall", "fw", *base, "--wait=false"],
                           capture_output=True, timeout=120)
            core.delete_namespace("fleetweb-install")


AGENT_CHART = CHART.parent / "fleetweb-agent"


def _key(doc: dict) -> tuple:
    return doc["kind"], doc["metadata"]["name"]


def test_the_agent_chart_applies_the_objects_of_the_hubs_agent_manifest(settings):
    from django.core.management import call_command

    from agents.manifests import agent_documents

    call_command("agent_chart", "--check")  # the committed chart is what the manifest writes today
    hub = "https://agents.fleetweb.example.com"
    rendered = [d for d in yaml.safe_load_all(helm("template", "agent", str(AGENT_CHART), "--namespace",
                                                   "fleetweb-system", "--set", f"hubUrl={hub}",
                                                   "--set", "bootstrapToken=fwb_token")) if d]
    expected = [d for d in agent_documents(hub_url=hub, bootstrap_token="fwb_token") if d["kind"] != "Namespace"]
    assert sorted(rendered, key=_key) == sorted(expected, key=_key)
    without = [d for d in yaml.safe_load_all(helm("template", "agent", str(AGENT_CHART), "--namespace",
                                                  "fleetweb-system", "--set", f"hubUrl={hub}")) if d]
    assert ("Secret", "fleetweb-agent-bootstrap") not in {_key(d) for d in without}, \
        "without a token in values, the Secret is the admin's to create"
    for refused, expected_error in ((["--namespace", "default", "--set", f"hubUrl={hub}"], "fleetweb-system"),
                                    (["--namespace", "fleetweb-system", "--set", "hubUrl=http://hub"], "hubUrl"),
                                    (["--namespace", "fleetweb-system"], "hubUrl")):
        with pytest.raises(RuntimeError) as failed:
            helm("template", "agent", str(AGENT_CHART), *refused)
        assert expected_error in str(failed.value)
