"""Each rule: a violating and a compliant example, its parameters, excluded namespaces."""

from __future__ import annotations

import datetime

import pytest

from governance import kubernetes_releases, rules
from governance.evaluation import _scoped

TODAY = datetime.date(2026, 11, 28)


def container(name="app", image="registry.example.com/app:1.0", **fields):
    base = {"name": name, "image": image, "init": False, "privileged": False, "allow_privilege_escalation": False,
            "run_as_non_root": True, "run_as_user": 10001, "capabilities_add": [],
            "requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"},
            "liveness_probe": True, "readiness_probe": True}
    return {**base, **fields}


def workload(name="web", namespace="shop", kind="Deployment", containers=None, labels=None, **template):
    pod_template = {"labels": {}, "host_network": False, "host_pid": False, "host_ipc": False,
                    "host_path_volumes": [], "service_account": "", "containers": containers or [container()]}
    pod_template.update(template)
    return {"namespace": namespace, "kind": kind, "name": name,
            "labels": labels if labels is not None else {"app.kubernetes.io/name": name},
            "pod_template": pod_template}


def ctx(workloads=(), namespaces=(), version="v1.35.4", kubelets=None):
    return rules.Context(cluster_name="c1", kubernetes_version=version, today=TODAY, workloads=list(workloads),
                         namespaces=list(namespaces), kubelet_versions=kubelets or {})


def run(key, context, **params):
    rule = rules.get(key)
    return list(rule.check(context, rule.clean_params(params)))


def namespace(name, quotas=1, limits=1, labels=None):
    psa = {"pod-security.kubernetes.io/enforce": "baseline"}
    return {"name": name, "labels": labels if labels is not None else psa,
            "resource_quotas": quotas, "limit_ranges": limits}


COMPLIANT = workload()


@pytest.mark.parametrize(("key", "bad", "fragment"), [
    ("no-privileged-containers", workload(containers=[container(privileged=True)]), "privileged container(s): app"),
    ("no-privilege-escalation", workload(containers=[container(allow_privilege_escalation=None)]),
     "allowPrivilegeEscalation is not false in: app"),
    ("run-as-non-root", workload(containers=[container(run_as_non_root=None, run_as_user=None)]), "may run as root"),
    ("run-as-non-root", workload(containers=[container(run_as_non_root=False, run_as_user=0)]), "may run as root"),
    ("no-host-path", workload(host_path_volumes=["/var/run/docker.sock"]), "/var/run/docker.sock"),
    ("no-host-namespaces", workload(host_network=True, host_pid=True), "network, PID"),
    ("resources-set", workload(containers=[container(requests={}, limits={})]),
     "app (requests.cpu, requests.memory, limits.memory)"),
    ("no-latest-tag", workload(containers=[container(image="busybox")]), "busybox"),
    ("no-latest-tag", workload(containers=[container(image="registry.example.com:5000/app:latest")]), ":latest"),
    ("probes-set", workload(containers=[container(liveness_probe=False)]), "app (liveness)"),
    ("required-labels", workload(labels={}), "app.kubernetes.io/name"),
])
def test_workload_rules_flag_the_violating_and_pass_the_compliant(key, bad, fragment):
    findings = run(key, ctx([bad, COMPLIANT]))
    assert len(findings) == 1, findings
    assert findings[0].kind == bad["kind"] and findings[0].name == bad["name"] and findings[0].namespace == "shop"
    assert fragment in findings[0].message
    assert run(key, ctx([COMPLIANT])) == []


def test_run_as_non_root_accepts_a_non_zero_user_without_the_flag():
    assert run("run-as-non-root", ctx([workload(containers=[container(run_as_non_root=None, run_as_user=1000)])])) == []


def test_init_containers_count_for_pod_rules_but_not_for_probes():
    init = container(name="setup", init=True, privileged=True, liveness_probe=False, readiness_probe=False)
    w = workload(containers=[container(), init])
    assert run("no-privileged-containers", ctx([w]))[0].message == "privileged container(s): setup"
    assert run("probes-set", ctx([w])) == []


def test_probes_only_matter_for_long_running_workloads():
    job = workload(kind="Job", containers=[container(liveness_probe=False, readiness_probe=False)])
    assert run("probes-set", ctx([job])) == []
    assert run("probes-set", ctx([job]), liveness=False) == []


def test_host_path_allows_listed_paths_and_below():
    w = workload(host_path_volumes=["/var/log/pods", "/etc"])
    assert "/etc" in run("no-host-path", ctx([w]), allowed_paths=["/var/log"])[0].message
    assert run("no-host-path", ctx([w]), allowed_paths=["/var/log", "/etc"]) == []
    assert "/var/logs" in run("no-host-path", ctx([workload(host_path_volumes=["/var/logs"])]),
                              allowed_paths=["/var/log"])[0].message


def test_resources_parameters_choose_what_is_required():
    w = workload(containers=[container(requests={"cpu": "1"}, limits={})])
    assert run("resources-set", ctx([w]), memory_requests=False, memory_limits=False) == []
    assert "limits.cpu" in run("resources-set", ctx([workload()]), cpu_limits=True)[0].message


def test_allowed_registries_match_whole_path_segments():
    images = ["registry.example.com/app:1", "registry.example.com.evil.io/app:1", "ghcr.io/acme/tool:2",
              "ghcr.io/acmecorp/tool:2", "nginx:1.27"]
    w = workload(containers=[container(name=f"c{i}", image=img) for i, img in enumerate(images)])
    [finding] = run("allowed-registries", ctx([w]), registries=["registry.example.com", "ghcr.io/acme"])
    assert finding.message == ("image(s) from registries not allowed: ghcr.io/acmecorp/tool:2, nginx:1.27, "
                               "registry.example.com.evil.io/app:1")


def test_allowed_registries_needs_at_least_one_registry():
    with pytest.raises(rules.ParamError) as excinfo:
        rules.get("allowed-registries").clean_params({})
    assert excinfo.value.errors == {"registries": "give at least one value"}
    assert rules.get("allowed-registries").needs_input


def test_digests_and_version_tags_are_pinned():
    for image in ("app@sha256:abc", "registry.example.com:5000/app:1.2", "app:1"):
        assert run("no-latest-tag", ctx([workload(containers=[container(image=image)])])) == [], image


def test_required_labels_parameter():
    w = workload(labels={"app.kubernetes.io/name": "web"})
    assert run("required-labels", ctx([w]), labels=["app.kubernetes.io/name"]) == []
    assert run("required-labels", ctx([w]), labels=["team", "cost-center"])[0].message == \
        "missing label(s): team, cost-center"
    with pytest.raises(rules.ParamError):
        rules.get("required-labels").clean_params({"labels": ["not a key!"]})


def test_namespace_rules():
    namespaces = [namespace("ok"), namespace("open", quotas=0, limits=0, labels={}),
                  namespace("loose", labels={"pod-security.kubernetes.io/enforce": "privileged"})]
    unknown = namespace("unknown", quotas=None, limits=None)  # not listed: never reported as missing
    assert [f.name for f in run("namespace-quota", ctx(namespaces=namespaces + [unknown]))] == ["open"]
    assert [f.name for f in run("namespace-limit-range", ctx(namespaces=namespaces + [unknown]))] == ["open"]
    findings = run("namespace-pod-security", ctx(namespaces=namespaces))
    assert [(f.name, f.message.split(";")[0]) for f in findings] == [
        ("open", "label pod-security.kubernetes.io/enforce is missing"),
        ("loose", "label pod-security.kubernetes.io/enforce is 'privileged'")]
    assert [f.name for f in run("namespace-pod-security", ctx(namespaces=namespaces),
                                levels=["privileged", "baseline"])] == ["open"]


def test_excluded_namespaces_are_removed_before_any_rule_runs():
    context = ctx([workload(namespace="kube-system", containers=[container(privileged=True)])],
                  [namespace("kube-system", quotas=0)])
    scoped = _scoped(context, list(rules.DEFAULT_EXCLUDED_NAMESPACES))
    assert run("no-privileged-containers", scoped) == []
    assert run("namespace-quota", scoped) == []
    assert len(run("no-privileged-containers", context)) == 1


@pytest.mark.parametrize(("version", "expected"), [
    ("v1.33.5", "Kubernetes 1.33 is out of upstream support since 2026-06-28"),
    ("v1.34.1-eks-1234", "Kubernetes 1.34 is out of upstream support since 2026-10-27"),
    ("v1.18.0", "Kubernetes 1.18 is out of upstream support"),
    ("v1.35.4", None),
    ("v1.40.0", None),  # newer than the shipped table: taken as supported
    ("", None),
])
def test_version_support(version, expected):
    findings = run("kubernetes-version-supported", ctx(version=version))
    assert [f.message for f in findings] == ([expected] if expected else [])
    if findings:
        assert findings[0].kind == "Cluster" and findings[0].name == "c1"


def test_support_ending_within_the_window():
    assert run("kubernetes-support-ending", ctx(version="v1.35.4")) == []  # 92 days left, default 90
    [finding] = run("kubernetes-support-ending", ctx(version="v1.35.4"), days=120)
    assert finding.message == "upstream support of Kubernetes 1.35 ends on 2027-02-28, in 92 days"
    assert run("kubernetes-support-ending", ctx(version="v1.33.0"), days=400) == []  # already out: other rule


def test_kubelet_skew():
    kubelets = {"v1.35.4": 10, "v1.32.9": 2, "v1.31.0": 1, "v1.36.0": 1}
    findings = {f.name: f.message for f in run("kubelet-version-skew", ctx(kubelets=kubelets))}
    assert findings == {
        "v1.31.0": "1 node run kubelet v1.31.0, 4 minors behind the API server v1.35.4 (at most 3 allowed)",
        "v1.36.0": "1 node run kubelet v1.36.0, newer than the API server v1.35.4 (never supported)",
    }
    assert set(f.name for f in run("kubelet-version-skew", ctx(kubelets=kubelets), max_minor_skew=1)) == {
        "v1.31.0", "v1.32.9", "v1.36.0"}


def test_release_table_parses_versions():
    assert kubernetes_releases.minor_of("v1.35.4-gke.100") == (1, 35)
    assert kubernetes_releases.minor_of("garbage") is None
    assert kubernetes_releases.end_of_life((1, 36)) == datetime.date(2027, 6, 28)


@pytest.mark.parametrize("params", [{"days": 0}, {"days": "soon"}, {"nope": 1}])
def test_bad_parameters_are_refused_by_name(params):
    with pytest.raises(rules.ParamError) as excinfo:
        rules.get("kubernetes-support-ending").clean_params(params)
    assert set(excinfo.value.errors) == set(params)


def test_catalog_is_complete_and_every_rule_explains_itself():
    keys = {r.key for r in rules.catalog()}
    assert len(keys) == 17
    for rule in rules.catalog():
        assert rule.title and rule.why and rule.fix and rule.severity in rules.SEVERITIES
        assert rule.enforceable or rule.audit_only_reason
        if rule.enforceable:
            admission = rule.admission(rule.clean_params({"registries": ["r.example.com"]}
                                                          if rule.key == "allowed-registries" else {}))
            assert admission.validations and all("Fleetweb policy " + rule.key in v["message"]
                                                 for v in admission.validations)
