"""The agent's watch cache against a real API server: listed once, then kept by the watch's events, so the list it
sends the hub is what the API server lists (without managedFields), and every change marks the kind changed."""

from __future__ import annotations

import json
import threading

import pytest
from kubernetes import client as k8s

from fleetagent.kube import Kube
from fleetagent.watch import READY, Watcher
from tests.conftest import wait_for

pytestmark = pytest.mark.e2e

NAMESPACE = "watch-cache"


def _deployment(name: str, replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}}


def _cached(watcher: Watcher) -> dict[str, dict]:
    text = watcher.list_text()
    assert text is not None
    return {item["metadata"]["uid"]: item for item in json.loads(text)["items"]}


def test_the_watch_cache_follows_the_api_server(localfleet_members, tmp_path):
    member = next(iter(localfleet_members.values()))
    (tmp_path / "token").write_text(member.reader_token)
    (tmp_path / "ca.crt").write_text(member.ca_pem)
    kube = Kube(member.server, token_file=str(tmp_path / "token"), ca_file=str(tmp_path / "ca.crt"))
    stop = threading.Event()
    changed: list[str] = []
    watcher = Watcher(kube, "/apis/apps/v1/deployments", changed.append, stop)
    with member.admin_api() as api:
        core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        try:
            apps.create_namespaced_deployment(NAMESPACE, _deployment("before", 1))
            watcher.start()
            wait_for(lambda: watcher.state == READY, timeout=30, what="the first list")
            assert changed, "the first list marks the kind changed: the hub may hold an older one"

            def listed() -> dict[str, int]:
                items = apps.list_deployment_for_all_namespaces().items
                return {d.metadata.uid: d.spec.replicas for d in items}

            def cached() -> dict[str, int]:
                return {uid: item["spec"]["replicas"] for uid, item in _cached(watcher).items()}

            assert cached() == listed()
            changed.clear()
            apps.create_namespaced_deployment(NAMESPACE, _deployment("after", 1))
            apps.patch_namespaced_deployment("before", NAMESPACE, {"spec": {"replicas": 3}})
            wait_for(lambda: cached() == listed() and len(cached()) == len(listed()), timeout=30,
                     what="the created and the scaled Deployment in the cache")
            assert changed and set(changed) == {"/apis/apps/v1/deployments"}
            apps.delete_namespaced_deployment("after", NAMESPACE)
            wait_for(lambda: cached() == listed(), timeout=30, what="the deleted Deployment gone from the cache")
            assert not any("managedFields" in item["metadata"] for item in _cached(watcher).values())
            assert watcher.bytes == sum(watcher.sizes.values()) and watcher.restarts == 1
        finally:
            stop.set()
            core.delete_namespace(NAMESPACE)
