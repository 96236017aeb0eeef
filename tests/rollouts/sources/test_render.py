"""Rendering on the hub with the pinned helm and kustomize (built into the binary cache), boxed: no network, no
plugins, no lookup, limits; and charts read from a real chart repository and a real OCI registry."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from localfleet import binaries
from localfleet.charts import ChartRepository, Registry
from rollouts.sources import charts, render
from rollouts.sources.git import Auth
from rollouts.sources.render import RenderError
from rollouts.sources.tree import SourceError

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("sources", "tools")]


@pytest.fixture
def tools(settings):
    settings.FLEETWEB_HELM = str(binaries.path_of("helm"))
    settings.FLEETWEB_KUSTOMIZE = str(binaries.path_of("kustomize"))


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


def chart(root: Path, *, version: str = "1.0.0", template: str = "", values: str = "replicas: 2\n") -> Path:
    return _write(root, {
        "Chart.yaml": f"apiVersion: v2\nname: web\nversion: {version}\n",
        "values.yaml": values,
        "templates/deploy.yaml": template or """\
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: {{ .Release.Name }}-web
            spec:
              replicas: {{ .Values.replicas }}
              selector: {matchLabels: {app: web}}
              template:
                metadata: {labels: {app: web}}
                spec: {containers: [{name: web, image: "nginx:1.27"}]}
            """})


def _objects(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_a_chart_renders_with_values_in_order(tmp_path):
    done = render.render(chart(tmp_path / "web"), release="shop", namespace="shop",
                         values=["replicas: 3\n", "replicas: 5\n"])
    (deployment,) = _objects(done.text)
    assert deployment["metadata"]["name"] == "shop-web" and deployment["spec"]["replicas"] == 5
    assert done.tool == "helm" and done.tool_version.startswith("v4.3.2")


def test_lookup_finds_nothing(tmp_path):
    root = chart(tmp_path / "web", template="""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: probe}
        data:
          found: {{ (lookup "v1" "Secret" "kube-system" "") | toJson | quote }}
        """)
    (config,) = _objects(render.render(root, release="r", namespace="shop").text)
    assert config["data"]["found"] in ("{}", "null", "map[]")


def test_a_template_error_names_the_file_and_line(tmp_path):
    root = chart(tmp_path / "web", template="kind: {{ .Values.missing.deeper }}\n")
    with pytest.raises(RenderError) as failed:
        render.render(root, release="r", namespace="shop")
    assert "templates/deploy.yaml:1" in str(failed.value)
    assert str(tmp_path) not in str(failed.value)


def test_a_chart_with_dependencies_not_vendored_is_refused(tmp_path):
    root = chart(tmp_path / "web")
    (root / "Chart.yaml").write_text("apiVersion: v2\nname: web\nversion: 1.0.0\ndependencies:\n"
                                     "- name: redis\n  version: 1.0.0\n  repository: https://charts.example.com\n")
    with pytest.raises(RenderError, match="dependency 'redis' is not vendored"):
        render.render(root, release="r", namespace="shop")


def test_a_kustomize_overlay_renders_from_its_base(tmp_path):
    _write(tmp_path, {
        "base/kustomization.yaml": "resources: [config.yaml]\n",
        "base/config.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {a: '1'}\n",
        "overlays/prod/kustomization.yaml": "resources: [../../base]\nnamePrefix: prod-\n",
    })
    done = render.render(tmp_path / "overlays/prod", release="r", namespace="shop", checkout=tmp_path)
    (config,) = _objects(done.text)
    assert config["metadata"]["name"] == "prod-web" and done.tool == "kustomize"
    assert done.tool_version


@pytest.mark.parametrize("entry", ["https://10.0.0.1/base", "github.com/org/repo//base?ref=v1",
                                   "git::https://example.com/repo.git", "../../../outside"])
def test_a_kustomization_reaching_out_is_refused_before_the_tool_runs(tmp_path, entry):
    _write(tmp_path, {"app/kustomization.yaml": f"resources: ['{entry}']\n"})
    with pytest.raises(RenderError, match="remote location|outside the source"):
        render.render(tmp_path / "app", release="r", namespace="shop", checkout=tmp_path)


def test_kustomize_exec_functions_and_helm_charts_are_refused(tmp_path):
    _write(tmp_path, {"a/kustomization.yaml": "helmCharts:\n- name: redis\n  repo: https://charts.example.com\n"})
    with pytest.raises(RenderError, match="helmCharts makes Kustomize fetch charts"):
        render.render(tmp_path / "a", release="r", namespace="shop", checkout=tmp_path)
    _write(tmp_path, {"b/kustomization.yaml": "generators: [gen.yaml]\n",
                      "b/gen.yaml": textwrap.dedent("""\
                          apiVersion: example.com/v1
                          kind: Gen
                          metadata:
                            name: g
                            annotations:
                              config.kubernetes.io/function: |
                                exec:
                                  path: /bin/sh
                          """)})
    with pytest.raises(RenderError, match="kustomize could not render"):
        render.render(tmp_path / "b", release="r", namespace="shop", checkout=tmp_path)


def test_rendered_output_over_the_cap_is_stopped(tmp_path, settings):
    settings.FLEETWEB_SOURCE_MAX_RENDERED_BYTES = 2**16
    root = chart(tmp_path / "web", template='{{ range until 5000 }}---\nkind: ConfigMap\nmetadata: {name: "c{{ . }}"}\n'
                                          '{{ end }}')
    with pytest.raises(RenderError, match="larger than 64 KiB"):
        render.render(root, release="r", namespace="shop")


def test_plain_files_render_as_they_are(tmp_path):
    _write(tmp_path, {"a.yaml": "kind: ConfigMap\nmetadata: {name: a}\n", "b.json": '{"kind": "Secret"}',
                      "notes.txt": "not read", "sub/c.yaml": "kind: Deployment\n"})
    done = render.render(tmp_path, release="r", namespace="shop")
    assert [d["kind"] for d in _objects(done.text)] == ["ConfigMap", "Secret"] and done.tool == "plain"


@pytest.fixture(scope="module")
def chart_repository(tmp_path_factory):
    repository = ChartRepository(tmp_path_factory.mktemp("charts")).start()
    yield repository
    repository.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    server = Registry(tmp_path_factory.mktemp("oci"), user="robot", password="pull-secret").start()
    yield server
    server.stop()


def test_a_range_resolves_to_one_version_from_a_chart_repository(chart_repository, tmp_path):
    for version in ("1.0.0", "1.2.0", "2.0.0"):
        chart_repository.publish(chart(tmp_path / f"src-{version}", version=version))
    found = charts.from_repository(chart_repository.url, "web", "^1.0", tmp_path / "out")
    assert found.version == "1.2.0" and found.digest.startswith("sha256:")
    assert (found.folder / "Chart.yaml").read_text().endswith("version: 1.2.0\n")
    with pytest.raises(SourceError, match="no chart 'db'"):
        charts.from_repository(chart_repository.url, "db", "*", tmp_path / "none")


def test_an_archive_that_does_not_match_its_index_is_refused(chart_repository, tmp_path):
    chart_repository.publish(chart(tmp_path / "src", version="3.0.0"))
    archive = chart_repository.files / "web-3.0.0.tgz"
    archive.write_bytes(archive.read_bytes() + b"tampered")
    with pytest.raises(SourceError, match="does not match the digest its index gives"):
        charts.from_repository(chart_repository.url, "web", "3.0.0", tmp_path / "out")


def test_a_chart_from_an_oci_registry_with_credentials(registry, settings, tmp_path):
    settings.FLEETWEB_SOURCE_OCI_PLAIN_HTTP = True
    for version in ("4.2.0", "4.2.1", "5.0.0"):
        reference = registry.push(chart(tmp_path / f"src-{version}", version=version))
    auth = Auth(username="robot", password="pull-secret")
    found = charts.from_oci(reference, "~4.2", tmp_path / "out", auth)
    assert found.version == "4.2.1" and found.digest.startswith("sha256:")
    assert (found.folder / "templates/deploy.yaml").is_file()
    with pytest.raises(SourceError, match="asks for credentials|refused the credentials") as refused:
        charts.from_oci(reference, "4.2.1", tmp_path / "anonymous")
    assert refused.value.kind == "auth"


@pytest.mark.django_db
def test_a_helm_application_pins_chart_version_and_digest_and_a_bump_is_a_new_revision(chart_repository, tmp_path,
                                                                                     admin_user):
    from rollouts import services, sourcing

    app = services.create_application(name="shop", namespace="shop", user=admin_user, manifests_text=(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: seed}\n"))
    chart_repository.publish(chart(tmp_path / "c-7.0.0", version="7.0.0"))
    source = sourcing.set_source(app, user=admin_user, kind="helm", url=chart_repository.url, chart="web",
                                 version="^7.0", values="replicas: 4\n")
    first = sourcing.check(source)
    assert first is not None and first.source["version"] == "7.0.0" and first.source["tool"] == "helm"
    assert first.source["chart_digest"].startswith("sha256:") and first.source["tool_version"].startswith("v4.3.2")
    (deployment,) = _objects(first.manifests)
    assert deployment["metadata"]["name"] == "shop-web" and deployment["spec"]["replicas"] == 4
    assert sourcing.check(source) is None, "the same version: nothing new"
    bumped_template = (tmp_path / "c-7.0.0/templates/deploy.yaml").read_text().replace("nginx:1.27", "nginx:1.28")
    chart_repository.publish(chart(tmp_path / "c-7.1.0", version="7.1.0", template=bumped_template))
    bumped = sourcing.check(source)
    assert bumped is not None and bumped.source["version"] == "7.1.0" and bumped.number == first.number + 1
    assert "nginx:1.28" in bumped.manifests and "replicas: 4" in bumped.manifests, "the application's values hold"
