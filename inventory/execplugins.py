"""Kubeconfig exec credential plugins, run by Fleetweb itself rather than by the `kubernetes` package.

A kubeconfig's `exec` section names a program to run; run as written it would let whoever uploads a
kubeconfig run any program on the Fleetweb host with Fleetweb's environment (database URL, encryption
keys). So here:

- the program is found **by name** in the directories an admin configured (FLEETWEB_EXEC_PLUGIN_DIRS), never
  at a path from the kubeconfig, and only when the name is in the table below;
- its `args` and `env` must match that plugin's allow-list (each flag with a value pattern);
- it runs with a minimal environment: PATH = the plugin directories, HOME = FLEETWEB_EXEC_PLUGIN_HOME, the
  kubeconfig's allowed env, and the host variables an admin passes through (FLEETWEB_EXEC_PLUGIN_ENV);
  nothing of Fleetweb's own;
- only in worker processes (sync, connection tests, rollouts), never in the web process;
- with a time limit, and its output read as an ExecCredential (token or client certificate) only: its
  stderr is never shown, since it may hold anything.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

from django.conf import settings

NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
REGION = r"[a-z]{2}(-[a-z]+)+-\d"
ARN = r"arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}"
UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
GUID_OR_URI = rf"({UUID}|https://{NAME}(/{NAME})*)"
RUN_TIMEOUT = 30


@dataclasses.dataclass(frozen=True)
class Plugin:
    """What one plugin may be given: leading subcommands, `--flag value` pairs, bare switches and env."""

    subcommands: tuple[tuple[str, ...], ...] = ((),)
    flags: dict = dataclasses.field(default_factory=dict)  # flag -> value pattern
    switches: frozenset = frozenset()
    env: dict = dataclasses.field(default_factory=dict)  # name -> value pattern
    # Flags and env that name an identity or an endpoint (a role, a profile, a tenant, an authority host), each
    # -> what it names; their values must also be in FLEETWEB_EXEC_PLUGIN_IDENTITIES (aliases share the name).
    identities: dict = dataclasses.field(default_factory=dict)


AWS_ENV = {"AWS_PROFILE": NAME, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
           "AWS_STS_REGIONAL_ENDPOINTS": r"regional|legacy"}

# The plugins Fleetweb knows, with what their documented kubeconfigs pass (see README, "Exec plugins").
PLUGINS: dict[str, Plugin] = {
    "aws": Plugin(subcommands=(("eks", "get-token"),),
                  flags={"--cluster-name": NAME, "--cluster-id": NAME, "--region": REGION, "--role-arn": ARN,
                         "--output": r"json", "--profile": NAME},
                  env=AWS_ENV, identities={"--role-arn": "role", "--profile": "profile", "AWS_PROFILE": "profile"}),
    "aws-iam-authenticator": Plugin(subcommands=(("token",),),
                                    flags={"-i": NAME, "--cluster-id": NAME, "-r": ARN, "--role": ARN,
                                           "--region": REGION},
                                    env=AWS_ENV, identities={"-r": "role", "--role": "role", "AWS_PROFILE": "profile"}),
    "gke-gcloud-auth-plugin": Plugin(switches=frozenset({"--use_application_default_credentials"}),
                                     env={"CLOUDSDK_CORE_PROJECT": NAME}),
    "kubelogin": Plugin(subcommands=(("get-token",),),
                        flags={"--login": r"azurecli|spn|msi|workloadidentity|devicecode|interactive|ropc|azd",
                               "--environment": r"AzurePublicCloud|AzureChinaCloud|AzureUSGovernmentCloud",
                               "--server-id": GUID_OR_URI, "--client-id": UUID, "--tenant-id": UUID,
                               "--authority-host": r"https://[A-Za-z0-9.-]+/?", "--pop-enabled": r"true|false"},
                        switches=frozenset({"--legacy"}),
                        env={"AAD_LOGIN_METHOD": r"azurecli|msi|workloadidentity|spn"},
                        identities={"--server-id": "server-id", "--client-id": "client-id", "--tenant-id": "tenant-id",
                                    "--authority-host": "authority-host"}),
    "ack-ram-authenticator": Plugin(subcommands=(("token",),),
                                    flags={"-i": NAME, "--cluster-id": NAME, "-r": r"acs:ram::\d+:role/[\w.-]+",
                                           "--region": r"[a-z]{2}-[a-z0-9-]+"},
                                    identities={"-r": "role"}),
}


class ExecPluginError(ValueError):
    """An exec section Fleetweb will not run, or a run that gave no credential; the message says which."""


def check(spec: dict, *, user: str = "") -> tuple[str, Plugin]:
    """Check an `exec` section against the allow-lists; return the plugin's name and rules."""
    who = f"User '{user}'" if user else "The kubeconfig"
    command = str(spec.get("command") or "")
    if not command:
        raise ExecPluginError(f"{who} has an exec plugin without a command.")
    name = command.rsplit("/", 1)[-1]
    if "/" in command:
        # A path would pick the program; Fleetweb finds plugins by name in its own directories only.
        raise ExecPluginError(f"{who} runs the exec plugin at the path {command!r}: give only its name "
                              f"('{name}'); Fleetweb looks it up in FLEETWEB_EXEC_PLUGIN_DIRS.")
    plugin = PLUGINS.get(name)
    if plugin is None or name not in settings.FLEETWEB_ALLOWED_EXEC_PLUGINS:
        raise ExecPluginError(f"{who} runs the exec plugin '{name}', which is not allowed here (allowed: "
                              f"{', '.join(p for p in settings.FLEETWEB_ALLOWED_EXEC_PLUGINS if p in PLUGINS)}).")
    _check_args(name, plugin, [str(a) for a in spec.get("args") or []], who)
    for item in spec.get("env") or []:
        key, value = str((item or {}).get("name", "")), str((item or {}).get("value", ""))
        pattern = plugin.env.get(key)
        if pattern is None:
            raise ExecPluginError(f"{who}: the exec plugin '{name}' may not be given the environment variable "
                                  f"'{key}' (allowed: {', '.join(plugin.env) or 'none'}).")
        if not re.fullmatch(pattern, value):
            raise ExecPluginError(f"{who}: the value of '{key}' for '{name}' is not allowed.")
        _require_listed(name, plugin, key, value, who)
    if not settings.FLEETWEB_EXEC_PLUGIN_DIRS:
        raise ExecPluginError(f"{who} needs the exec plugin '{name}', but this Fleetweb runs no exec plugins "
                              "(an admin sets FLEETWEB_EXEC_PLUGIN_DIRS).")
    if locate(name) is None:
        raise ExecPluginError(f"{who} needs the exec plugin '{name}', which is not installed in "
                              "FLEETWEB_EXEC_PLUGIN_DIRS on the Fleetweb server.")
    return name, plugin


def _check_args(name: str, plugin: Plugin, args: list[str], who: str) -> None:
    rest = None
    for sub in plugin.subcommands:
        if tuple(args[:len(sub)]) == sub:
            rest = args[len(sub):]
            break
    if rest is None:
        expected = " or ".join(" ".join(s) for s in plugin.subcommands)
        raise ExecPluginError(f"{who}: the exec plugin '{name}' must be run as '{name} {expected} …'.")
    index = 0
    while index < len(rest):
        arg = rest[index]
        flag, eq, value = arg.partition("=")
        if flag in plugin.switches and not eq:
            index += 1
            continue
        pattern = plugin.flags.get(flag)
        if pattern is None:
            raise ExecPluginError(f"{who}: the exec plugin '{name}' may not be given the argument {arg[:64]!r}.")
        if not eq:
            if index + 1 >= len(rest):
                raise ExecPluginError(f"{who}: the argument '{flag}' of '{name}' has no value.")
            value = rest[index + 1]
            index += 1
        if not re.fullmatch(pattern, value):
            raise ExecPluginError(f"{who}: the value of '{flag}' for '{name}' is not allowed.")
        _require_listed(name, plugin, flag, value, who)
        index += 1


def listed_identities() -> set[tuple[str, str, str]]:
    """(plugin, what it names, value) from FLEETWEB_EXEC_PLUGIN_IDENTITIES (`plugin:FLAG_OR_ENV=value`)."""
    listed = set()
    for entry in settings.FLEETWEB_EXEC_PLUGIN_IDENTITIES:
        plugin_name, _, rest = entry.partition(":")
        key, _, value = rest.partition("=")
        plugin = PLUGINS.get(plugin_name)
        if plugin is not None and key in plugin.identities:
            listed.add((plugin_name, plugin.identities[key], value))
    return listed


def _require_listed(name: str, plugin: Plugin, key: str, value: str, who: str) -> None:
    """An argument naming an identity or endpoint must be one an admin listed: free text would let whoever writes
    the kubeconfig borrow any role Fleetweb's host identity may assume, or send its token elsewhere."""
    kind = plugin.identities.get(key)
    if kind is not None and (name, kind, value) not in listed_identities():
        raise ExecPluginError(f"{who}: '{key}' of '{name}' names a {kind} that is not in "
                              f"FLEETWEB_EXEC_PLUGIN_IDENTITIES (an admin lists each one as {name}:{key}=VALUE).")


def locate(name: str) -> Path | None:
    """The plugin's executable in the first configured directory holding it."""
    for directory in settings.FLEETWEB_EXEC_PLUGIN_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


# Only worker processes run plugins (set by the Celery worker at start, and by tests that mean it).
_allowed_here = threading.Event()


def allow_in_this_process() -> None:
    _allowed_here.set()


def forbid_in_this_process() -> None:
    _allowed_here.clear()


def allowed_in_this_process() -> bool:
    return _allowed_here.is_set()


_cache: dict[str, tuple[float, dict]] = {}
_cache_lock = threading.Lock()


def credential(spec: dict, *, server: str, user: str = "") -> dict:
    """Run the plugin (or reuse its unexpired credential) and return {"token"} or {"client-certificate-data",
    "client-key-data"} for the kubeconfig's user section."""
    if not allowed_in_this_process():
        raise ExecPluginError("Exec plugins run only in Fleetweb's workers, never in the web process.")
    name, _plugin = check(spec, user=user)
    key = hashlib.sha256(json.dumps([spec, server], sort_keys=True, default=str).encode()).hexdigest()
    with _cache_lock:
        cached = _cache.get(key)
        if cached and cached[0] > time.time() + 60:
            return dict(cached[1])
    executable = locate(name)
    info = {"apiVersion": spec.get("apiVersion") or "client.authentication.k8s.io/v1", "kind": "ExecCredential",
            "spec": {"interactive": False, "cluster": {"server": server}}}
    env = {"PATH": os.pathsep.join(settings.FLEETWEB_EXEC_PLUGIN_DIRS), "HOME": settings.FLEETWEB_EXEC_PLUGIN_HOME,
           "LANG": "C.UTF-8", "KUBERNETES_EXEC_INFO": json.dumps(info)}
    for passed in settings.FLEETWEB_EXEC_PLUGIN_ENV:
        if passed in os.environ:
            env[passed] = os.environ[passed]
    for item in spec.get("env") or []:
        env[str(item["name"])] = str(item["value"])
    try:
        done = subprocess.run([str(executable), *[str(a) for a in spec.get("args") or []]], env=env,
                              cwd=settings.FLEETWEB_EXEC_PLUGIN_HOME, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=RUN_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise ExecPluginError(f"The exec plugin '{name}' gave no credential within {RUN_TIMEOUT}s.") from None
    except OSError as exc:
        raise ExecPluginError(f"The exec plugin '{name}' cannot be started: {exc.strerror}.") from None
    if done.returncode != 0:
        raise ExecPluginError(f"The exec plugin '{name}' failed (exit status {done.returncode}); run it on a "
                              "worker host to see why.")
    try:
        status = json.loads(done.stdout)["status"]
    except (ValueError, KeyError, TypeError):
        raise ExecPluginError(f"The exec plugin '{name}' did not print an ExecCredential.") from None
    if not isinstance(status, dict):
        raise ExecPluginError(f"The exec plugin '{name}' did not print an ExecCredential.")
    if status.get("token"):
        result = {"token": str(status["token"])}
    elif status.get("clientCertificateData") and status.get("clientKeyData"):
        result = {"client-certificate-data": base64.b64encode(str(status["clientCertificateData"]).encode()).decode(),
                  "client-key-data": base64.b64encode(str(status["clientKeyData"]).encode()).decode()}
    else:
        raise ExecPluginError(f"The exec plugin '{name}' printed an ExecCredential without a token or certificate.")
    expires = _expiry(status.get("expirationTimestamp"))
    if expires:
        with _cache_lock:
            _cache[key] = (expires, result)
    return dict(result)


def _expiry(text) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
