"""Helm values per group: a group's override carries values of its own, the chart is rendered again with them (a
values file after the application's) into the same revision, that group's clusters receive that rendering, and the
revision pins each group's values digest. Changing a group's values renders a new revision; nothing else does."""

from __future__ import annotations

import textwrap

import pytest
import yaml
from django.test import Client
from django.urls import reverse

from foundation.models import AuditEvent
from inventory import services as inventory_services
from inventory.people import services as team_services
from localfleet import binaries
from rollouts import rendering, services, sourcing
from rollouts.errors import RolloutError
from rollouts.models import Override, Revision, Source
from tests.builders import make_cluster, make_user
from tests.rollouts.sources.conftest import TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.django_db, pytest.mark.usefixtures("sources", "tools")]

PASTED = """apiVersion: v1
kind: ConfigMap
metadata: {name: web}
data: {a: "1"}
"""

CHART = {
    "chart/Chart.yaml": "apiVersion: v2\nname: web\nversion: 1.0.0\n",
    "chart/values.yaml": "replicas: 2\nimage: nginx:1.27\n",
    "chart/templates/deploy.yaml": textwrap.dedent("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
        spec:
          replicas: {{ .Values.replicas }}
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec: {containers: [{name: web, image: {{ .Values.image | quote }}}]}
        """),
}


@pytest.fixture
def tools(settings):
    settings.FLEETWEB_HELM = str(binaries.path_of("helm"))
    settings.FLEETWEB_KUSTOMIZE = str(binaries.path_of("kustomize"))


@pytest.fixture
def world(git_server, admin_user):
    """A chart in Git, an application reading it, clusters in dev and prod and a group for each."""
    url = git_server.create("shop/chart")
    git_server.commit("shop/chart", CHART, message="The chart")
    clusters = {"dev-1": make_cluster("dev-1", labels={"env": "dev"}),
                "prod-1": make_cluster("prod-1", labels={"env": "prod"}),
                "prod-2": make_cluster("prod-2", labels={"env": "prod"})}
    groups = {name: inventory_services.create_group(name=name, selector=f"env={name}", user=admin_user)
              for name in ("dev", "prod")}
    app = services.create_application(name="shop", namespace="shop", manifests_text=PASTED, user=admin_user)
    credential = sourcing.create_credential(user=admin_user, name="shop-git", secret=TOKEN)
    source = sourcing.set_source(app, user=admin_user, kind="git", url=url, ref="main", path="chart",
                                 values="image: nginx:1.28\n", credential=credential)
    first = sourcing.check(source)
    assert first is not None and first.variants == {}, Source.objects.get(pk=source.pk).error
    return {"app": app, "source": source, "clusters": clusters, "groups": groups, "url": url, "first": first,
            "credential": credential}


def _check(source: Source, **kwargs):
    """A check as the worker's task runs it: of the source as stored now."""
    return sourcing.check(Source.objects.select_related("application", "credential").get(pk=source.pk), **kwargs)


def _replicas(objects: list[dict]) -> int:
    return next(o for o in objects if o["kind"] == "Deployment")["spec"]["replicas"]


def _image(objects: list[dict]) -> str:
    return next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]


def test_a_groups_values_are_rendered_into_the_next_revision_for_its_clusters_only(world, admin_user,
                                                                                     django_capture_on_commit_callbacks):
    app, source = world["app"], world["source"]
    with django_capture_on_commit_callbacks() as queued:
        services.set_override(app, group=world["groups"]["prod"], user=admin_user, values="replicas: 5\n")
    assert len(queued) == 1, "a check of the source is queued once the values are saved"
    source.refresh_from_db()
    assert source.seen == "", "the next check renders again even though the commit did not change"
    revision = sourcing.check(source)
    assert revision is not None and revision.number == world["first"].number + 1
    (variant,) = revision.variants.values()
    assert variant["group"] == "prod" and variant["digest"] and variant["values_digest"].startswith("sha256:")
    assert revision.source["group_values"] == {"prod": variant["values_digest"]}
    assert revision.digest != world["first"].digest

    rendered = rendering.render_all(app, revision, world["clusters"].values())
    by_name = {name: rendered[c.pk] for name, c in world["clusters"].items()}
    assert [_replicas(by_name[n]) for n in ("dev-1", "prod-1", "prod-2")] == [2, 5, 5]
    assert {_image(objects) for objects in by_name.values()} == {"nginx:1.28"}, "the application's values hold"
    assert all(o["metadata"]["annotations"]["fleetweb.io/digest"] == revision.digest
               for objects in by_name.values() for o in objects)
    # the earlier revision pins what it was rendered with: the group's values are not in it
    assert _replicas(rendering.render_all(app, world["first"], [world["clusters"]["prod-1"]])
                     [world["clusters"]["prod-1"].pk]) == 2

    assert sourcing.check(source) is None, "nothing changed: no new revision"
    event = AuditEvent.objects.filter(action="application.override").latest("pk")
    assert event.after["values_digest"] == variant["values_digest"] and "replicas: 5" not in str(event.after)
    assert event.after["render_queued"] is True


def test_removing_a_groups_values_renders_a_revision_without_them(world, admin_user):
    app, source = world["app"], world["source"]
    services.set_override(app, group=world["groups"]["prod"], user=admin_user, values="replicas: 5\n")
    with_values = _check(source)
    assert with_values is not None and with_values.variants
    assert services.set_override(app, group=world["groups"]["prod"], user=admin_user, values="") is None
    assert not Override.objects.filter(application=app).exists(), "an override left empty is removed"
    without = _check(source)
    assert without is not None and without.variants == {} and without.digest == world["first"].digest


def test_a_groups_values_on_a_source_that_is_no_chart_are_an_error_on_the_source(world, git_server, admin_user):
    app = world["app"]
    url = git_server.create("shop/plain")
    git_server.commit("shop/plain", {"deploy/cm.yaml": PASTED.replace("web", "plain")}, message="Plain")
    services.set_override(app, group=world["groups"]["dev"], user=admin_user, values="replicas: 3\n")
    source = sourcing.set_source(app, user=admin_user, kind="git", url=url, ref="main", path="deploy",
                                 credential=world["credential"])
    before = Revision.objects.filter(application=app).count()
    with pytest.raises(RolloutError) as refused:
        sourcing.check(source, user=admin_user)
    assert "group dev's override carries Helm values" in str(refused.value) and "plain" in str(refused.value)
    source.refresh_from_db()
    assert "group dev" in source.error and source.error_kind == "invalid"
    assert Revision.objects.filter(application=app).count() == before


def test_values_that_do_not_render_name_the_group(world, admin_user):
    services.set_override(world["app"], group=world["groups"]["prod"], user=admin_user,
                          values="replicas: [1, 2]\n")  # valid YAML, and the chart's template fails on it
    with pytest.raises(RolloutError) as refused:
        _check(world["source"], user=admin_user)
    assert "with group prod's values" in str(refused.value)


@pytest.mark.parametrize(("values", "expected"), [
    ("replicas: [1\n", "not valid YAML (line"),
    ("- a\n- b\n", "a YAML mapping"),
    ("a: &x 1\nb: *x\n", "not valid YAML"),
    ("x: " + "y" * (256 * 1024), "at most 256 KiB"),
])
def test_bad_values_are_refused_at_save_and_change_nothing(world, admin_user, values, expected):
    with pytest.raises(RolloutError) as refused:
        services.set_override(world["app"], group=world["groups"]["prod"], user=admin_user, values=values)
    assert expected in str(refused.value.errors["values"])
    assert not Override.objects.filter(application=world["app"]).exists()
    assert Source.objects.get(pk=world["source"].pk).seen != ""


def test_values_are_refused_for_an_application_of_pasted_yaml(admin_user):
    group = inventory_services.create_group(name="prod", selector="env=prod", user=admin_user)
    app = services.create_application(name="pasted", namespace="pasted", manifests_text=PASTED, user=admin_user)
    with pytest.raises(RolloutError) as refused:
        services.set_override(app, group=group, user=admin_user, values="replicas: 5\n")
    assert "set its source first" in str(refused.value.errors["values"])
    assert not Override.objects.filter(application=app).exists()


def test_operator_cannot_set_group_values_of_another_teams_application(world, admin_user):
    other = team_services.save_team(user=admin_user, name="other", selector="env=dev")
    outsider = make_user("outsider")
    team_services.add_member(other, member=outsider, role="operator", user=admin_user)
    team = team_services.save_team(user=admin_user, name="shopteam", selector="env=prod")
    services.update_application(world["app"], user=admin_user, owner_team=team)
    with pytest.raises(RolloutError) as refused:
        services.set_override(world["app"], group=world["groups"]["dev"], user=outsider, values="replicas: 9\n")
    assert refused.value.status in (403, 404)
    assert not Override.objects.filter(application=world["app"]).exists()
    assert Source.objects.get(pk=world["source"].pk).seen != "", "no render was queued"


def test_the_api_sets_group_values_and_shows_each_groups_rendering(world, admin_user):
    client = Client()
    client.force_login(admin_user)
    app = world["app"]
    answer = client.put(f"/api/v1/applications/{app.pk}/overrides/prod/", {"values": "replicas: 4\n"},
                        content_type="application/json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["values"] == "replicas: 4\n"
    revision = _check(world["source"])
    assert revision is not None
    shown = client.get(f"/api/v1/applications/{app.pk}/revisions/").json()
    rows = shown["results"] if isinstance(shown, dict) else shown
    newest = next(r for r in rows if r["number"] == revision.number)
    (variant,) = newest["variants"]
    assert variant["group"] == "prod" and variant["digest"] == revision.variants[next(iter(revision.variants))][
        "digest"]
    assert _replicas([d for d in yaml.safe_load_all(variant["manifests"]) if d]) == 4
    raw_url = reverse("rollouts:revision_raw", args=[app.name, revision.number])
    raw = client.get(f"{raw_url}?group=prod")
    assert raw.status_code == 200 and b"replicas: 4" in raw.content
    assert client.get(f"{raw_url}?group=dev").status_code == 404
    page = client.get(app.get_absolute_url())
    assert f'href="{raw_url}?group=prod"'.encode() in page.content and b"1 line" in page.content
    kept = client.put(f"/api/v1/applications/{app.pk}/overrides/prod/", {"replicas": 1},
                      content_type="application/json")
    assert kept.json()["values"] == "replicas: 4\n", "values absent from the body are kept"
