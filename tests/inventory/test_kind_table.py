"""The kind table is the whole table: a toy kind with a model of its own (ConfigMaps, stored as a model made here) is
one `kinds.register` entry plus its model, and the least-privilege role, the connection test, the collector, the sync
(insert, update, prune) and the cluster page's tab all take it from the table, with no other change."""

from __future__ import annotations

import msgspec
import pytest
from django.apps import apps
from django.db import connection, models

from inventory import access, decode, kinds, sync
from inventory.models import InventoryModel
from tests.builders import make_cluster, make_user
from tests.fakemember import FakeMembers, put

pytestmark = pytest.mark.django_db


class ToyConfigMap(decode._S):
    metadata: decode.Meta = msgspec.field(default_factory=decode.Meta)
    data: dict[str, str] = {}


def toy_row(item: ToyConfigMap) -> dict:
    meta = item.metadata
    return {"uid": meta.uid, "name": meta.name, "labels": dict(meta.labels), "created": meta.creation_timestamp,
            "namespace": meta.namespace, "keys": len(item.data)}


@pytest.fixture
def toy_kind(monkeypatch):
    """The model (its table made in this test's transaction, so it goes with it) and the kind's entry."""

    class ToyStored(InventoryModel):
        namespace = models.CharField(max_length=253)
        keys = models.PositiveIntegerField(default=0)

        class Meta:
            app_label = "inventory"
            db_table = "test_toy_configmap"
            constraints = [models.UniqueConstraint(fields=["cluster", "uid"], name="test_toy_unique_uid")]

    with connection.schema_editor() as editor:
        editor.create_model(ToyStored)
    for name in ("BY_NAME", "_DECODERS"):
        monkeypatch.setattr(kinds, name, dict(getattr(kinds, name)))
    monkeypatch.setattr(kinds, "KINDS", kinds.KINDS)
    monkeypatch.setattr(kinds, "NAMES", kinds.NAMES)
    kind = kinds.register(kinds.Kind("ConfigMap", "/api/v1/configmaps", "", "configmaps", ToyConfigMap, "rows",
                                     stored_as="ToyStored", row=toy_row, tab="configmaps"))
    yield kind, ToyStored
    del apps.all_models["inventory"]["toystored"]
    apps.clear_cache()


def _configmap(name: str, uid: str, **data) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "web", "uid": uid, "labels": {"app": "web"}}, "data": data}


def test_a_kind_with_its_own_model_is_its_entry_and_its_model(toy_kind, monkeypatch, client):
    kind, stored = toy_kind
    world = FakeMembers().install(monkeypatch)
    cluster = make_cluster("toy-1")
    put(world, "toy-1", "/api/v1/namespaces/web/configmaps/settings", _configmap("settings", "u-1", a="1", b="2"))
    put(world, "toy-1", "/api/v1/namespaces/web/configmaps/flags", _configmap("flags", "u-2", on="yes"))

    assert "configmaps" in access.least_privilege_manifest(), "the reader role may list it"
    report = access.test_connection({"method": "token", "server": "https://toy-1.example.com", "token": "t"})
    assert any(c.name == "list configmaps" and c.ok for c in report.checks), "the attach check asks for it"

    run = sync.sync_cluster(cluster.pk)
    assert run is not None and run.outcome == "succeeded", run and run.error
    assert run.counts["ConfigMap"] == 2
    assert sorted(stored.objects.filter(cluster=cluster).values_list("name", "keys")) == [("flags", 1),
                                                                                          ("settings", 2)]

    world.objects["toy-1"]["/api/v1/namespaces/web/configmaps/settings"]["data"]["c"] = "3"
    del world.objects["toy-1"]["/api/v1/namespaces/web/configmaps/flags"]
    assert sync.sync_cluster(cluster.pk).outcome == "succeeded"
    assert list(stored.objects.filter(cluster=cluster).values_list("name", "keys")) == [("settings", 3)], \
        "changed rows are updated and gone ones pruned after a complete sync"

    client.force_login(make_user("vera-viewer", "viewer"))
    page = client.get("/clusters/toy-1/?tab=configmaps").content.decode()
    assert 'href="?tab=configmaps"' in page or "tab=configmaps" in page, "the cluster page has its tab"
    assert 'id="kind-rows"' in page and "settings" in page and "<td>3</td>" in page
