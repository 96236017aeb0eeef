"""Kubeconfig validation: every bad input gets a message naming the problem."""

from __future__ import annotations

import base64
import functools
import re

import pytest
import yaml

from inventory import kube, kubeconfigs

CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()


def config(**user) -> dict:
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "prod",
        "clusters": [{"name": "c", "cluster": {"server": "https://api.example.com:6443",
                                               "certificate-authority-data": CA}}],
        "users": [{"name": "u", "user": user or {"token": "abc"}}],
        "contexts": [{"name": "prod", "context": {"cluster": "c", "user": "u"}}],
    }


def parse(data) -> dict:
    return kubeconfigs.parse_kubeconfig(yaml.safe_dump(data) if isinstance(data, dict) else data)


@pytest.mark.parametrize(("text", "message"), [
    ("", "The kubeconfig is empty."),
    ("clusters: [unclosed", "not valid YAML at line 1"),
    ("- just\n- a list\n", "not a YAML mapping"),
    ("kind: Deployment\napiVersion: apps/v1\n", "This is a 'Deployment' manifest, not a kubeconfig"),
    ("apiVersion: v1\nkind: Config\nclusters: []\n", "has no 'clusters' list"),
])
def test_unparseable_kubeconfigs(text, message):
    with pytest.raises(kubeconfigs.KubeconfigError, match=message.replace("(", r"\(").replace("'", "'")):
        kubeconfigs.parse_kubeconfig(text)


def test_five_megabytes_of_garbage_is_refused_by_size():
    with pytest.raises(kubeconfigs.KubeconfigError, match="the limit is 1024 KiB"):
        kubeconfigs.parse_kubeconfig(b"\x00\xff" * (5 * 1024 * 1024 // 2))


def test_binary_garbage_under_the_limit_is_not_utf8():
    with pytest.raises(kubeconfigs.KubeconfigError, match="not UTF-8"):
        kubeconfigs.parse_kubeconfig(b"\xff\xfe\x00garbage" * 100)


def test_missing_references_are_named():
    data = config()
    data["contexts"][0]["context"]["user"] = "ghost"
    with pytest.raises(kubeconfigs.KubeconfigError, match="User 'ghost' is referenced but not defined in 'users'"):
        kubeconfigs.extract_context(parse(data), "prod")
    data = config()
    data["contexts"][0]["context"] = {"user": "u"}
    with pytest.raises(kubeconfigs.KubeconfigError, match="Context 'prod' names no cluster"):
        kubeconfigs.extract_context(parse(data), "prod")
    with pytest.raises(kubeconfigs.KubeconfigError, match="Context 'nope' is referenced but not defined"):
        kubeconfigs.extract_context(parse(config()), "nope")


def test_file_paths_in_uploads_are_refused():
    data = config()
    data["clusters"][0]["cluster"] = {"server": "https://x:6443", "certificate-authority": "/etc/passwd"}
    with pytest.raises(kubeconfigs.KubeconfigError, match="refers to the file '/etc/passwd'; uploaded kubeconfigs"):
        kubeconfigs.extract_context(parse(data), "prod")


def test_file_paths_are_inlined_from_the_cli_and_missing_files_named(tmp_path):
    (tmp_path / "ca.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    data = config()
    data["clusters"][0]["cluster"] = {"server": "https://x:6443", "certificate-authority": "ca.crt"}
    single = kubeconfigs.extract_context(parse(data), "prod", base_dir=tmp_path)
    assert base64.b64decode(single["clusters"][0]["cluster"]["certificate-authority-data"]).startswith(b"-----BEGIN")
    data["clusters"][0]["cluster"]["certificate-authority"] = "missing.crt"
    with pytest.raises(kubeconfigs.KubeconfigError, match="missing.crt', which cannot be read: No such file"):
        kubeconfigs.extract_context(parse(data), "prod", base_dir=tmp_path)


def test_exec_plugins_must_be_allowed_and_installed(settings, tmp_path):
    data = config(exec={"apiVersion": "client.authentication.k8s.io/v1", "command": "rm", "args": ["-rf", "/"]})
    with pytest.raises(kubeconfigs.KubeconfigError, match="exec plugin 'rm', which is not allowed here"):
        kubeconfigs.extract_context(parse(data), "prod")
    settings.FLEETWEB_EXEC_PLUGIN_DIRS = [str(tmp_path)]
    data = config(exec={"apiVersion": "client.authentication.k8s.io/v1", "command": "aws",
                        "args": ["eks", "get-token", "--cluster-name", "prod"]})
    with pytest.raises(kubeconfigs.KubeconfigError, match="needs the exec plugin 'aws', which is not installed"):
        kubeconfigs.extract_context(parse(data), "prod")


def test_unknown_auth_provider_is_named():
    data = config(**{"auth-provider": {"name": "gcp", "config": {}}})
    with pytest.raises(kubeconfigs.KubeconfigError, match="auth provider 'gcp', which Fleetweb does not support"):
        kubeconfigs.extract_context(parse(data), "prod")


def test_user_without_credentials_and_cert_without_key():
    with pytest.raises(kubeconfigs.KubeconfigError, match="User 'u' has no credentials"):
        kubeconfigs.extract_context(parse(_with_user({"as": "someone"})), "prod")
    cert = base64.b64encode(b"cert").decode()
    with pytest.raises(kubeconfigs.KubeconfigError, match="client certificate but no client key"):
        kubeconfigs.extract_context(parse(config(**{"client-certificate-data": cert})), "prod")


def _with_user(user: dict) -> dict:
    data = config()
    data["users"][0]["user"] = user
    return data


def test_bad_base64_and_bad_server_are_named():
    data = config()
    data["clusters"][0]["cluster"]["certificate-authority-data"] = "not base64!!"
    message = "'certificate-authority-data' of context 'prod' is not valid base64"
    with pytest.raises(kubeconfigs.KubeconfigError, match=message):
        kubeconfigs.extract_context(parse(data), "prod")
    data = config()
    data["clusters"][0]["cluster"]["server"] = "api.example.com"
    with pytest.raises(kubeconfigs.KubeconfigError, match="server URL of cluster 'c' must start with https:// or http://"):
        kubeconfigs.extract_context(parse(data), "prod")


def test_a_good_context_becomes_a_single_context_kubeconfig():
    data = config()
    data["contexts"].append({"name": "other", "context": {"cluster": "c", "user": "u"}})
    single = kubeconfigs.extract_context(parse(data), "prod")
    assert [c["name"] for c in single["contexts"]] == ["prod"]
    assert single["current-context"] == "prod"
    assert kube.server_of(kubeconfigs.credentials_from_kubeconfig(single)) == "https://api.example.com:6443"


@pytest.mark.django_db
def test_attaching_a_kubeconfig_file_inlines_files_and_reports_each_context(tmp_path):
    from inventory.models import Cluster
    from inventory.services import attach_kubeconfig_file

    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    data = config()
    data["clusters"][0]["cluster"] = {"server": "https://k8s-master:6443", "certificate-authority": "certs/ca.crt"}
    data["users"].append({"name": "plugin", "user": {"exec": {"command": "not-allowed"}}})
    data["contexts"].append({"name": "team:dev", "context": {"cluster": "c", "user": "plugin"}})
    (tmp_path / "config").write_text(yaml.safe_dump(data))
    results = dict(attach_kubeconfig_file(tmp_path / "config"))
    assert results["prod"] == "attached as prod"
    assert results["team:dev"].startswith("not attached: User 'plugin' runs the exec plugin 'not-allowed'")
    credentials = Cluster.objects.get(name="prod").credential.open()
    cluster = credentials["kubeconfig"]["clusters"][0]["cluster"]
    assert "certificate-authority" not in cluster and cluster["certificate-authority-data"]
    assert dict(attach_kubeconfig_file(tmp_path / "config"))["prod"] == "already attached as prod"
    with pytest.raises(kubeconfigs.KubeconfigError, match="cannot read .*missing: No such file"):
        attach_kubeconfig_file(tmp_path / "missing")


# No input gives a 500 (issue 25, class 7): wrong types, depth and alias bombs are a 400 naming the field.

def _set(path: str, value) -> dict:
    data = config()
    node = data
    *parents, last = path.split(".")
    for key in parents:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    node[last] = value
    return data


@pytest.mark.parametrize(("path", "value", "message"), [
    ("contexts.0.context", ["c", "u"], "'contexts[0].context' must be a mapping"),
    ("contexts.0.context.cluster", {"name": "c"}, "'contexts[0].context.cluster' must be a string"),
    ("clusters.0.cluster", "https://api.example.com", "'clusters[0].cluster' must be a mapping"),
    ("clusters.0.cluster.server", ["https://a"], "'clusters[0].cluster.server' must be a string"),
    ("clusters.0.cluster.certificate-authority-data", 12345, "certificate-authority-data' must be a string"),
    ("clusters.0.cluster.insecure-skip-tls-verify", "yes please", "insecure-skip-tls-verify' must be true or false"),
    ("users.0.user", [["token", "x"]], "'users[0].user' must be a mapping"),
    ("users.0.user.token", ["a", "b"], "'users[0].user.token' must be a string"),
    ("users.0.user.token", 12345, "'users[0].user.token' must be a string"),
    ("users.0.user.exec", ["aws"], "'users[0].user.exec' must be a mapping"),
    ("users.0.user.exec", {"command": "aws", "args": "eks get-token"}, "exec.args' must be a list of strings"),
    ("users.0.user.exec", {"command": "aws", "args": [["eks"]]}, "exec.args' must be a list of strings"),
    ("users.0.user.exec", {"command": "aws", "env": ["AWS_PROFILE=x"]}, "exec.env[0]' must be a mapping"),
    ("users.0.user.exec", {"command": "aws", "env": [{"name": "A", "value": {"x": 1}}]}, "env[0].value' must be"),
    ("users.0.name", ["u"], "'users[0].name' must be a string"),
])
def test_fields_of_the_wrong_type_are_named(path, value, message):
    with pytest.raises(kubeconfigs.KubeconfigError, match=re.escape(message)):
        kubeconfigs.extract_context(parse(_set(path, value)), "prod")


def test_deep_nesting_and_alias_bombs_are_refused():
    deep = "clusters: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(kubeconfigs.KubeconfigError, match="nests deeper than 32 levels"):
        parse(deep)
    nested = yaml.safe_dump({**config(), "preferences": functools.reduce(lambda inner, _: {"a": inner}, range(40), {})})
    with pytest.raises(kubeconfigs.KubeconfigError, match="nests deeper than 32 levels"):
        parse(nested)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n" + yaml.safe_dump(config())
    with pytest.raises(kubeconfigs.KubeconfigError, match="aliases"):
        parse(bomb)


@pytest.mark.parametrize("body", [
    {"name": "x", "kubeconfig": yaml.safe_dump(_set("users.0.user", ["token"]))},
    {"name": "x", "kubeconfig": "clusters: " + "[" * 3000 + "]" * 3000},
    {"name": "x", "kubeconfig": ["not", "text"]},
    {"name": "x", "kubeconfig": {"clusters": []}},
])
def test_operator_cannot_crash_the_attach_api_with_a_hostile_kubeconfig(operator, api_as, body):
    from inventory.models import Cluster

    response = api_as(operator).post("/api/v1/clusters/", body, format="json")
    assert response.status_code == 400, response.content
    assert not Cluster.objects.exists()
