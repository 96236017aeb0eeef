"""Rendering a fetched source into manifests, on the hub, boxed: plain YAML files as they are, a Kustomize directory
with `kustomize build`, a Helm chart with `helm template`, each tool at its pinned version (FLEETWEB_HELM,
FLEETWEB_KUSTOMIZE: built from their Go modules into the binary cache like the member binaries, installed in the
image).

The box, for input nobody at Fleetweb wrote:
- no network: the tools run with every proxy variable pointing at a closed local port and no `git` on their PATH,
  so nothing they try to fetch is fetched; before that, what would fetch is refused in Fleetweb's words (a
  kustomization's remote resources, bases and Helm charts; a chart whose dependencies are not vendored in `charts/`);
  Helm's `lookup` returns nothing in `helm template` (it has no cluster to ask);
- no plugins: Kustomize's exec and container functions and alpha plugins are off (its defaults, kept), Helm's
  plugin, cache, config and data folders are empty temporary ones; no post-renderer;
- limits: FLEETWEB_SOURCE_RENDER_SECONDS for the tool, FLEETWEB_SOURCE_MAX_RENDERED_BYTES of output (the tool is
  stopped when it writes more), the files themselves capped when they were fetched (`rollouts.sources.tree`);
- errors in Fleetweb's words, with the file and line the tool named (never the temporary folder's path).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import tempfile
import threading
from pathlib import Path

import yaml
from django.conf import settings

from foundation import untrusted
from rollouts.sources.tree import shown, size_text

PLAIN, KUSTOMIZE, HELM = "plain", "kustomize", "helm"
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, every connection is refused at once


class RenderError(ValueError):
    """A source that does not render; the message says why in Fleetweb's words (with the file and line when the tool
    named them)."""


@dataclasses.dataclass(frozen=True)
class Rendered:
    text: str  # multi-document YAML, in the tool's order
    tool: str  # PLAIN, KUSTOMIZE or HELM
    tool_version: str  # "" for plain files


def detect(root: Path) -> str:
    """How the folder renders: a kustomization makes it Kustomize, a Chart.yaml a Helm chart, else plain files."""
    if any((root / name).is_file() for name in KUSTOMIZATION_FILES):
        return KUSTOMIZE
    if (root / "Chart.yaml").is_file():
        return HELM
    return PLAIN


def render(root: Path, *, release: str, namespace: str, values: list[str] | None = None,
           checkout: Path | None = None) -> Rendered:
    """Render the folder `root` (inside `checkout`, the whole fetched tree, for Kustomize's bases) as `detect` says;
    `values`: Helm values files' contents, in order (later ones win)."""
    root = root.resolve()
    checkout = (checkout or root).resolve()
    if not root.is_dir() or not root.is_relative_to(checkout):
        raise RenderError("the path is not a folder of the source")
    tool = detect(root)
    if tool == KUSTOMIZE:
        _refuse_remote_kustomizations(root, checkout)
        text = _run([settings.FLEETWEB_KUSTOMIZE, "build", str(root)], cwd=root, hide=checkout)
        return Rendered(text, KUSTOMIZE, tool_version(KUSTOMIZE))
    if tool == HELM:
        _refuse_unvendored_dependencies(root)
        with tempfile.TemporaryDirectory(prefix="fleetweb-values-") as folder:
            files = []
            for index, text in enumerate(values or []):
                path = Path(folder) / f"values-{index}.yaml"
                path.write_text(text)
                files += ["--values", str(path)]
            text = _run([settings.FLEETWEB_HELM, "template", release, str(root), "--namespace", namespace,
                         "--skip-tests", *files], cwd=root, hide=checkout)
        return Rendered(text, HELM, tool_version(HELM))
    return Rendered(_plain(root, checkout), PLAIN, "")


def _plain(root: Path, checkout: Path) -> str:
    """The folder's YAML and JSON files (not its subfolders, as Argo CD reads a directory), in name order."""
    documents, total = [], 0
    for path in sorted(root.iterdir()):
        if not path.is_file() or path.suffix not in MANIFEST_SUFFIXES:
            continue
        total += path.stat().st_size
        if total > settings.FLEETWEB_SOURCE_MAX_RENDERED_BYTES:
            raise RenderError(f"the manifests are larger than {size_text(settings.FLEETWEB_SOURCE_MAX_RENDERED_BYTES)}")
        text = path.read_text(errors="replace")
        documents.append(f"# Source: {path.relative_to(checkout)}\n{text.strip()}\n")
    if not documents:
        raise RenderError("the folder holds no YAML or JSON file, no kustomization and no Chart.yaml")
    return "---\n".join(documents)


# A kustomization field whose entries may name another place; helmCharts fetch charts from repositories.
_REFERENCES = ("resources", "bases", "components", "crds", "patchesStrategicMerge", "configurations", "generators",
               "transformers", "validators")
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|[a-z][a-z0-9+.-]*::|git@|github\.com/|gitlab\.com/|bitbucket\.org/)",
                     re.IGNORECASE)


def _refuse_remote_kustomizations(root: Path, checkout: Path) -> None:
    """Every kustomization the build would read (this one and the folders it names, within the checkout) names only
    files and folders of the checkout: a remote base or resource, a Helm chart Kustomize would fetch, and any path
    leaving the checkout are refused here, before the tool runs."""
    todo, seen = [root], set()
    while todo:
        folder = todo.pop()
        if folder in seen:
            continue
        seen.add(folder)
        found = next((folder / name for name in KUSTOMIZATION_FILES if (folder / name).is_file()), None)
        if found is None:
            continue
        where = found.relative_to(checkout)
        try:
            data = yaml.load(found.read_text(errors="replace"), Loader=untrusted.NoAliasLoader)  # noqa: S506
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise RenderError(f"{where}{f':{mark.line + 1}' if mark else ''}: the kustomization does not parse as "
                              "YAML") from None
        if not isinstance(data, dict):
            raise RenderError(f"{where}: the kustomization is not a mapping")
        if data.get("helmCharts") or data.get("helmChartInflationGenerator"):
            raise RenderError(f"{where}: helmCharts makes Kustomize fetch charts; Fleetweb renders a Helm chart as an "
                              "application of its own (a chart repository, an OCI registry or a chart in Git)")
        for field in _REFERENCES:
            entries = data.get(field) or []
            if not isinstance(entries, list):
                continue
            for entry in entries:
                if not isinstance(entry, str):
                    continue
                if _REMOTE.match(entry.strip()):
                    raise RenderError(f"{where}: '{field}' names a remote location ({shown(entry)}); Fleetweb "
                                      "renders from the fetched source only: vendor it into the repository")
                target = (folder / entry).resolve()
                if not target.is_relative_to(checkout):
                    raise RenderError(f"{where}: '{field}' names a path outside the source ({shown(entry)})")
                if target.is_dir():
                    todo.append(target)


def _refuse_unvendored_dependencies(root: Path) -> None:
    """A chart's dependencies must be in its `charts/` folder: `helm template` would otherwise fail, and Fleetweb
    fetches nothing while rendering."""
    try:
        chart = yaml.load((root / "Chart.yaml").read_text(errors="replace"), Loader=untrusted.NoAliasLoader)  # noqa: S506
    except yaml.YAMLError:
        raise RenderError("Chart.yaml does not parse as YAML") from None
    if not isinstance(chart, dict):
        raise RenderError("Chart.yaml is not a mapping")
    vendored = {path.name for path in (root / "charts").iterdir()} if (root / "charts").is_dir() else set()
    for dependency in chart.get("dependencies") or []:
        name = dependency.get("name", "") if isinstance(dependency, dict) else ""
        if not any(found == name or found.startswith(f"{name}-") for found in vendored):
            raise RenderError(f"Chart.yaml: the dependency '{shown(str(name))}' is not vendored in charts/ "
                              "(run `helm dependency build` and commit charts/, or publish the chart with it)")


def _box_environment(home: str) -> dict[str, str]:
    """The tools' environment: nothing of the worker's (its secrets, its proxies), no network, no git, empty Helm
    folders."""
    return {
        "PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8",
        "HTTP_PROXY": CLOSED, "HTTPS_PROXY": CLOSED, "http_proxy": CLOSED, "https_proxy": CLOSED,
        "ALL_PROXY": CLOSED, "NO_PROXY": "", "no_proxy": "",
        "HELM_CACHE_HOME": f"{home}/cache", "HELM_CONFIG_HOME": f"{home}/config", "HELM_DATA_HOME": f"{home}/data",
        "HELM_PLUGINS": f"{home}/plugins", "HELM_REGISTRY_CONFIG": f"{home}/registry.json",
        "HELM_REPOSITORY_CONFIG": f"{home}/repositories.yaml", "HELM_REPOSITORY_CACHE": f"{home}/repository",
        "KUBECONFIG": f"{home}/no-kubeconfig",
    }


def _run(command: list[str], *, cwd: Path, hide: Path) -> str:
    """Run a tool in the box; its standard output, or RenderError with its first error line."""
    cap = settings.FLEETWEB_SOURCE_MAX_RENDERED_BYTES
    with tempfile.TemporaryDirectory(prefix="fleetweb-render-") as home:
        try:
            proc = subprocess.Popen(command, cwd=cwd, env=_box_environment(home), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise RenderError(f"{Path(command[0]).name} could not be started ({exc.strerror}): is it installed? "
                              f"(FLEETWEB_{Path(command[0]).name.upper()})") from None
        out, err, over = bytearray(), bytearray(), threading.Event()

        def drain(stream, into: bytearray, limit: int) -> None:
            for chunk in iter(lambda: stream.read(65536), b""):
                if len(into) + len(chunk) > limit:
                    over.set()
                    proc.kill()
                    return
                into += chunk

        readers = [threading.Thread(target=drain, args=(proc.stdout, out, cap), daemon=True),
                   threading.Thread(target=drain, args=(proc.stderr, err, 65536), daemon=True)]
        for reader in readers:
            reader.start()
        try:
            proc.wait(timeout=settings.FLEETWEB_SOURCE_RENDER_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RenderError(f"{Path(command[0]).name} did not finish within "
                              f"{settings.FLEETWEB_SOURCE_RENDER_SECONDS} s") from None
        finally:
            for reader in readers:
                reader.join(timeout=5)
        if over.is_set():
            raise RenderError(f"the rendered manifests are larger than {size_text(cap)}")
        if proc.returncode != 0:
            raise RenderError(_tool_error(err.decode(errors="replace"), hide=hide, home=home,
                                          tool=Path(command[0]).name))
        return out.decode(errors="replace")


def _tool_error(text: str, *, hide: Path, home: str, tool: str) -> str:
    """The tool's first error line, without the temporary folders' paths, at most 400 characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = next((line for line in lines if line.lower().startswith("error")), lines[0] if lines else "")
    first = first.replace(f"{hide}/", "").replace(str(hide), ".").replace(home, "~")
    first = re.sub(r"^error:\s*", "", first, flags=re.IGNORECASE)
    return f"{tool} could not render the source: {shown(first, 400)}" if first else f"{tool} failed"


_VERSIONS: dict[str, str] = {}


def tool_version(tool: str) -> str:
    """The tool's version as it reports it (asked once per process): part of what a revision pins."""
    if tool not in _VERSIONS:
        command = {HELM: [settings.FLEETWEB_HELM, "version", "--short"],
                   KUSTOMIZE: [settings.FLEETWEB_KUSTOMIZE, "version"]}[tool]
        with tempfile.TemporaryDirectory(prefix="fleetweb-render-") as home:
            try:
                done = subprocess.run(command, env=_box_environment(home), capture_output=True, text=True, timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                return ""
        _VERSIONS[tool] = done.stdout.strip().splitlines()[0][:64] if done.returncode == 0 and done.stdout else ""
    return _VERSIONS[tool]
