"""Reading kubeconfig files: parse, check, and cut one context into a self-contained kubeconfig (files inlined,
exec plugins checked against the allow-list). Nothing here dials a cluster."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml
from django.utils.text import slugify

from foundation import outbound, untrusted
from inventory import execplugins

MAX_KUBECONFIG_BYTES = 1024 * 1024


class KubeconfigError(ValueError):
    """A kubeconfig Fleetweb cannot use; the message names the problem."""


# ---------------------------------------------------------------------------------------------
# Kubeconfig parsing and validation


def parse_kubeconfig(text: str | bytes) -> dict:
    """Parse and structurally check a kubeconfig; raise KubeconfigError naming what is wrong."""
    if isinstance(text, bytes):
        if len(text) > MAX_KUBECONFIG_BYTES:
            raise KubeconfigError(f"The kubeconfig is {len(text) // 1024} KiB; the limit is "
                                  f"{MAX_KUBECONFIG_BYTES // 1024} KiB. Export one context with "
                                  "`kubectl config view --minify --flatten`.")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise KubeconfigError("The kubeconfig is not UTF-8 text (is this a binary file?).") from None
    if len(text.encode()) > MAX_KUBECONFIG_BYTES:
        raise KubeconfigError(f"The kubeconfig is larger than {MAX_KUBECONFIG_BYTES // 1024} KiB. Export one "
                              "context with `kubectl config view --minify --flatten`.")
    if not text.strip():
        raise KubeconfigError("The kubeconfig is empty.")
    try:
        data = yaml.load(text, Loader=untrusted.NoAliasLoader)  # noqa: S506 - a SafeLoader refusing aliases
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid syntax"
        raise KubeconfigError(f"The kubeconfig is not valid YAML{where}: {problem}.") from None
    except RecursionError:
        raise KubeconfigError(f"The kubeconfig nests deeper than {MAX_DEPTH} levels.") from None
    if not isinstance(data, dict):
        raise KubeconfigError("The kubeconfig is not a YAML mapping with clusters, users and contexts.")
    if data.get("kind") not in (None, "Config"):
        raise KubeconfigError(f"This is a {str(data.get('kind'))[:64]!r} manifest, not a kubeconfig (kind: Config).")
    _check_depth(data)
    for section in ("clusters", "users", "contexts"):
        value = data.get(section)
        if not isinstance(value, list) or not value:
            raise KubeconfigError(f"The kubeconfig has no '{section}' list.")
        for index, entry in enumerate(value):
            if not isinstance(entry, dict) or not entry.get("name"):
                raise KubeconfigError(f"Entry {index + 1} of '{section}' has no name.")
            _check_shape(entry, SHAPES[section], f"{section}[{index}]")
    return data


MAX_DEPTH = 32


def _check_depth(data) -> None:
    if untrusted.too_deep(data, MAX_DEPTH):
        raise KubeconfigError(f"The kubeconfig nests deeper than {MAX_DEPTH} levels.")


STR, BOOL, STR_LIST = "a string", "true or false", "a list of strings"
# The fields Fleetweb reads, with the type each must have; others are kept as they are (extensions and the like).
SHAPES: dict[str, dict] = {
    "clusters": {"name": STR, "cluster": {"server": STR, "proxy-url": STR, "certificate-authority": STR,
                                          "certificate-authority-data": STR, "insecure-skip-tls-verify": BOOL,
                                          "tls-server-name": STR}},
    "users": {"name": STR, "user": {"token": STR, "tokenFile": STR, "client-certificate": STR,
                                    "client-certificate-data": STR, "client-key": STR, "client-key-data": STR,
                                    "username": STR, "password": STR, "as": STR,
                                    "exec": {"command": STR, "apiVersion": STR, "args": STR_LIST,
                                             "env": [{"name": STR, "value": STR}], "installHint": STR,
                                             "provideClusterInfo": BOOL, "interactiveMode": STR}}},
    "contexts": {"name": STR, "context": {"cluster": STR, "user": STR, "namespace": STR}},
}


def _check_shape(value, shape, where: str) -> None:
    """KubeconfigError naming the first field (as `users[0].user.exec.args`) whose type is not the one Fleetweb
    reads: a list where a mapping belongs must be a clear 400, never a crash."""
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            raise KubeconfigError(f"'{where}' must be a mapping.")
        for key, inner in shape.items():
            if value.get(key) is not None:
                _check_shape(value[key], inner, f"{where}.{key}")
    elif isinstance(shape, list):
        if not isinstance(value, list):
            raise KubeconfigError(f"'{where}' must be a list.")
        for index, item in enumerate(value):
            _check_shape(item, shape[0], f"{where}[{index}]")
    elif not {STR: isinstance(value, str), BOOL: isinstance(value, bool),
              STR_LIST: isinstance(value, list) and all(isinstance(a, str) for a in value)}[shape]:
        raise KubeconfigError(f"'{where}' must be {shape}.")


def _named(data: dict, section: str, name: str) -> dict:
    for entry in data.get(section) or []:
        if entry.get("name") == name:
            return entry
    raise KubeconfigError(f"{section[:-1].capitalize()} '{name}' is referenced but not defined in '{section}'.")


def context_names(data: dict) -> list[str]:
    return [c["name"] for c in data.get("contexts") or []]


def extract_context(data: dict, context: str, *, base_dir: Path | None = None) -> dict:
    """A self-contained kubeconfig with one context: referenced files are inlined, plugins checked.

    `base_dir` is where relative file paths are resolved (the kubeconfig's folder, for the CLI);
    an uploaded kubeconfig has none, and any file path in it is refused: it would name a file on
    the Fleetweb server, not on the uploader's machine.
    """
    ctx_entry = _named(data, "contexts", context)
    ctx = ctx_entry.get("context") or {}
    if not ctx.get("cluster"):
        raise KubeconfigError(f"Context '{context}' names no cluster.")
    if not ctx.get("user"):
        raise KubeconfigError(f"Context '{context}' names no user.")
    cluster = _checked_cluster(ctx["cluster"], dict(_named(data, "clusters", ctx["cluster"]).get("cluster") or {}))
    user = dict(_named(data, "users", ctx["user"]).get("user") or {})
    _inline(cluster, "certificate-authority", "certificate-authority-data", f"Cluster '{ctx['cluster']}'", base_dir)
    _inline(user, "client-certificate", "client-certificate-data", f"User '{ctx['user']}'", base_dir)
    _inline(user, "client-key", "client-key-data", f"User '{ctx['user']}'", base_dir)
    _inline_token(user, ctx["user"], base_dir)
    _check_user(user, ctx["user"])
    for key in ("certificate-authority-data", "client-certificate-data", "client-key-data"):
        holder = cluster if key.startswith("certificate") else user
        if holder.get(key):
            try:
                base64.b64decode(holder[key], validate=True)
            except ValueError:
                raise KubeconfigError(f"'{key}' of context '{context}' is not valid base64.") from None
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": ctx["cluster"], "cluster": cluster}],
        "users": [{"name": ctx["user"], "user": user}],
        "contexts": [{"name": context, "context": {k: v for k, v in ctx.items() if k in ("cluster", "user")}}],
        "current-context": context,
    }


def _checked_cluster(name: str, cluster: dict) -> dict:
    """The cluster entry with its server and proxy URLs passed through the outbound address policy."""
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"Cluster '{name}' has no server URL.")
    try:
        cluster["server"] = outbound.check_url(str(server), schemes=("https", "http"),
                                               what=f"server URL of cluster '{name}'").url
        if cluster.get("proxy-url"):
            cluster["proxy-url"] = outbound.check_url(str(cluster["proxy-url"]), schemes=("http", "https"),
                                                      what=f"proxy-url of cluster '{name}'").url
    except outbound.OutboundRefused as exc:
        raise KubeconfigError(str(exc)) from None
    return cluster


def _inline(section: dict, path_key: str, data_key: str, what: str, base_dir: Path | None) -> None:
    """Replace a file reference by its base64 content (refused for an upload, which has no folder)."""
    path = section.pop(path_key, None)
    if not path:
        return
    if base_dir is None:
        raise KubeconfigError(f"{what} refers to the file {path!r}; uploaded kubeconfigs must carry the "
                              f"data inline ({data_key}). Use `kubectl config view --minify --flatten`.")
    file = Path(os.path.expanduser(path))
    if not file.is_absolute():
        file = base_dir / file
    try:
        section[data_key] = base64.b64encode(file.read_bytes()).decode()
    except OSError as exc:
        raise KubeconfigError(f"{what} refers to {str(file)!r}, which cannot be read: {exc.strerror}.") from None


def _inline_token(user: dict, name: str, base_dir: Path | None) -> None:
    token_file = user.pop("tokenFile", None)
    if not token_file:
        return
    if base_dir is None:
        raise KubeconfigError(f"User '{name}' reads its token from the file {token_file!r}; "
                              "uploaded kubeconfigs must carry the token inline.")
    try:
        user["token"] = (base_dir / os.path.expanduser(token_file)).read_text().strip()
    except OSError as exc:
        raise KubeconfigError(f"User '{name}' token file {token_file!r} cannot be read: {exc.strerror}.") from None


def _check_user(user: dict, name: str) -> None:
    """Credentials Fleetweb can use: a token, a client certificate with its key, an allowed exec plugin or OIDC."""
    if "auth-provider" in user:
        # The client library's oidc provider fetches discovery and posts the refresh token to whatever
        # token_endpoint it is told, past the outbound policy and following redirects; upstream deprecated every
        # auth provider for exec plugins, so none is taken.
        provider = user["auth-provider"].get("name", "?") if isinstance(user["auth-provider"], dict) else "?"
        raise KubeconfigError(f"User '{name}' uses the auth provider '{str(provider)[:64]}', which Fleetweb does "
                              "not support (auth providers are deprecated upstream): use an exec plugin such as "
                              "kubelogin, or a ServiceAccount token.")
    if "exec" in user:
        try:
            execplugins.check(user["exec"] or {}, user=name)
        except execplugins.ExecPluginError as exc:
            raise KubeconfigError(str(exc)) from None
    if not any(k in user for k in ("token", "client-certificate-data", "exec", "username")):
        raise KubeconfigError(f"User '{name}' has no credentials (token, client certificate or exec plugin).")
    if user.get("client-certificate-data") and not user.get("client-key-data"):
        raise KubeconfigError(f"User '{name}' has a client certificate but no client key.")


def credentials_from_kubeconfig(single: dict) -> dict:
    """Credentials dict for a kubeconfig made by `extract_context`."""
    return {"method": "kubeconfig", "kubeconfig": single, "context": single["current-context"]}


def default_name(context: str) -> str:
    """A cluster name from a kubeconfig context (slug, at most 63 characters)."""
    return slugify(context.replace("_", "-").replace(":", "-").replace("/", "-"))[:63].strip("-") or "cluster"
