"""Policy sets (issue 30, item 8): named baselines applied to a group in one step with a mode, through the pages,
the API and the service alike; all or nothing; never lowering a mode or changing set parameters; one evaluation
pass; built-in sets as shipped; operators below the needed role refused with nothing changed."""

from __future__ import annotations

import pytest
from django.test import Client

from foundation.errors import ServiceError
from foundation.models import AuditEvent
from governance import policysets, rules, services
from governance.choices import Mode
from governance.models import PolicyAssignment, PolicySet
from inventory import services as inventory_services
from inventory.models import Workload
from inventory.people import services as team_services
from tests.builders import make_cluster, make_user
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def prod(admin_user):
    cluster = make_cluster("prod-1", environment="prod", owner="payments")
    Workload.objects.create(cluster=cluster, uid="w", name="old-admin", kind="Deployment", namespace="legacy",
                            pod_template={"containers": [{"name": "a", "image": "x:latest", "privileged": True}]})
    return inventory_services.create_group(name="prod", selector="environment=prod", user=admin_user)


def _assigned(group) -> dict[str, str]:
    return dict(PolicyAssignment.objects.filter(group=group).values_list("rule_key", "mode"))


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_two_sets_ship_built_in_with_valid_rules_and_stay_as_shipped(admin_user):
    shipped = {s.name: s for s in PolicySet.objects.filter(built_in=True)}
    assert set(shipped) == {"pod-security-restricted", "production-baseline"}
    for policy_set in shipped.values():
        assert policy_set.items and all(i["rule"] in rules.REGISTRY for i in policy_set.items)
    restricted = shipped["pod-security-restricted"]
    assert {"rule": "namespace-pod-security", "params": {"levels": ["restricted"]}} in restricted.items
    with pytest.raises(ServiceError) as refused:
        policysets.save_set(user=admin_user, name=restricted.name, title="Mine", items=["no-host-path"],
                            policy_set=restricted)
    assert refused.value.status == 409
    with pytest.raises(ServiceError):
        policysets.delete_set(restricted, user=admin_user)
    assert PolicySet.objects.get(name=restricted.name).items == restricted.items


def test_applying_adds_what_is_missing_raises_modes_and_never_lowers_or_reparameterises(admin_user, prod,
                                                                                        django_capture_on_commit_callbacks):
    kept = services.create_assignment(group=prod, rule_key="no-host-path", user=admin_user, mode=Mode.ENFORCE)
    tuned = services.create_assignment(group=prod, rule_key="resources-set", user=admin_user,
                                       params={"cpu_requests": False})
    production = PolicySet.objects.get(name="production-baseline")
    with django_capture_on_commit_callbacks() as callbacks:
        steps = policysets.apply_set(policy_set=production, group=prod, mode=Mode.AUDIT, user=admin_user)
    assert len(callbacks) == 1, "one evaluation pass for the whole set"
    actions = {s.rule.key: s.action for s in steps}
    assert actions["no-host-path"] == "keep" and actions["resources-set"] == "keep"
    assert {k for k, a in actions.items() if a == "add"} == set(production.rule_keys) - {"no-host-path",
                                                                                         "resources-set"}
    assigned = _assigned(prod)
    assert set(assigned) == set(production.rule_keys)
    assert assigned["no-host-path"] == Mode.ENFORCE, "never lowered"
    assert PolicyAssignment.objects.get(pk=tuned.pk).params["cpu_requests"] is False, "parameters kept"
    assert PolicyAssignment.objects.get(pk=kept.pk).mode == Mode.ENFORCE
    [event] = AuditEvent.objects.filter(action="policy_set.apply")
    assert event.actor == admin_user and event.target_name == "production-baseline on prod"
    assert {s["rule"] for s in event.after["steps"]} == {k for k, a in actions.items() if a == "add"}
    assert AuditEvent.objects.filter(action="policy.assign").count() == 2 + len(event.after["steps"])

    # Applied again in enforce mode (an admin): what can be enforced is raised, the rest stays audit and says why.
    steps = policysets.apply_set(policy_set=production, group=prod, mode=Mode.ENFORCE, user=admin_user)
    by_rule = {s.rule.key: s for s in steps}
    assert by_rule["no-latest-tag"].action == "raise" and by_rule["no-latest-tag"].before == Mode.AUDIT
    assert by_rule["namespace-quota"].action == "keep" and "audit only" in by_rule["namespace-quota"].note
    assigned = _assigned(prod)
    assert assigned["no-latest-tag"] == Mode.ENFORCE and assigned["namespace-quota"] == Mode.AUDIT
    assert assigned["kubernetes-version-supported"] == Mode.AUDIT


def test_operator_cannot_enforce_a_set_and_nothing_of_it_is_applied(prod):
    operator = make_user("oscar", "operator")
    before = _assigned(prod)
    restricted = PolicySet.objects.get(name="pod-security-restricted")
    with pytest.raises(ServiceError) as refused:
        policysets.apply_set(policy_set=restricted, group=prod, mode=Mode.ENFORCE, user=operator)
    assert "Only admins may switch a policy to enforce" in refused.value.message
    assert refused.value.message.startswith("Privileged containers") or ":" in refused.value.message
    assert _assigned(prod) == before == {}, "all or nothing"
    assert not AuditEvent.objects.filter(action__startswith="policy").exists()
    answer = _client(operator).post(f"/policies/sets/{restricted.name}/apply/",
                                    {"group": "prod", "mode": "enforce", "confirmed": "on"})
    assert answer.status_code == 400 and "Only admins may switch a policy to enforce" in answer.content.decode()
    api = api_client_for(operator).post(f"/api/v1/policy-sets/{restricted.name}/apply/",
                                        {"group": "prod", "mode": "enforce"}, format="json")
    assert api.status_code == 400 and _assigned(prod) == {}
    policysets.apply_set(policy_set=restricted, group=prod, mode=Mode.AUDIT, user=operator)  # audit is theirs
    assert set(_assigned(prod).values()) == {Mode.AUDIT}


@pytest.mark.parametrize("role", ["team_operator", "team_viewer", "global_viewer", "nobody"])
def test_operator_cannot_below_the_global_role_create_change_or_apply_a_set(admin_user, prod, role):
    payments = team_services.save_team(user=admin_user, name="payments", selector="owner=payments")
    attacker = make_user("mallory", *(["viewer"] if role == "global_viewer" else []))
    if role.startswith("team_"):
        team_services.add_member(payments, member=attacker, role=role.removeprefix("team_"), user=admin_user)
    mine = policysets.save_set(user=admin_user, name="mine", title="Mine", items=["no-host-path"])
    sets_before = list(PolicySet.objects.values_list("name", "title", "items"))
    client, api = _client(attacker), api_client_for(attacker)
    for url, data in (("/policies/sets/new/", {"name": "evil", "title": "Evil", "rules": ["no-host-path"]}),
                      ("/policies/sets/mine/edit/", {"title": "Evil", "rules": ["no-latest-tag"]}),
                      ("/policies/sets/mine/delete/", {}),
                      ("/policies/sets/production-baseline/apply/", {"group": "prod", "mode": "audit"})):
        assert client.post(url, data).status_code == 403, url
    for method, url, data in (("post", "/api/v1/policy-sets/", {"name": "evil", "title": "E", "items": []}),
                              ("patch", "/api/v1/policy-sets/mine/", {"title": "Evil"}),
                              ("delete", "/api/v1/policy-sets/mine/", None),
                              ("post", "/api/v1/policy-sets/production-baseline/apply/", {"group": "prod"}),
                              ("post", "/api/v1/policy-sets/production-baseline/apply/",
                               {"group": "prod", "dry_run": True})):
        assert getattr(api, method)(url, data, format="json").status_code == 403, (method, url)
    with pytest.raises(ServiceError):
        policysets.apply_set(policy_set=mine, group=prod, mode=Mode.AUDIT, user=attacker)
    assert list(PolicySet.objects.values_list("name", "title", "items")) == sets_before
    assert _assigned(prod) == {}
    if role != "nobody":
        assert client.get("/policies/sets/").status_code == 200  # reading the sets is every viewer's
        assert api.get("/api/v1/policy-sets/").status_code == 200


def test_a_set_from_the_page_with_parameters_then_applied_with_a_preview(admin_user, prod):
    client = _client(admin_user)
    bad = client.post("/policies/sets/new/", {"name": "registries", "title": "Our registries",
                                              "rules": ["allowed-registries", "no-latest-tag"],
                                              "params": "allowed-registries: {registries: []}"})
    assert bad.status_code == 400 and "allowed-registries" in bad.content.decode()
    stray = client.post("/policies/sets/new/", {"name": "registries", "title": "Our registries",
                                                "rules": ["no-latest-tag"], "params": "no-host-path: {}"})
    assert stray.status_code == 400 and "a rule not chosen: no-host-path" in stray.content.decode()
    not_yaml = client.post("/policies/sets/new/", {"name": "registries", "title": "T", "rules": ["no-latest-tag"],
                                                   "params": "a: [b"})
    assert not_yaml.status_code == 400 and "Not YAML" in not_yaml.content.decode()
    assert not PolicySet.objects.filter(name="registries").exists()
    made = client.post("/policies/sets/new/", {
        "name": "registries", "title": "Our registries", "rules": ["allowed-registries", "no-latest-tag"],
        "params": "allowed-registries: {registries: [registry.example.com/]}"})
    assert made.status_code == 302
    ours = PolicySet.objects.get(name="registries")
    assert ours.items[0] == {"rule": "allowed-registries", "params": {"registries": ["registry.example.com/"]}}
    assert AuditEvent.objects.get(action="policy_set.create").actor == admin_user

    preview = client.get("/policies/sets/registries/?group=prod&mode=audit", HTTP_HX_REQUEST="true").content.decode()
    assert 'data-plan="no-latest-tag"' in preview and "add in audit" in preview
    assert "<strong>1</strong> object on 1 cluster" in preview and "prod-1: Deployment legacy/old-admin" in preview
    assert _assigned(prod) == {}, "a preview changes nothing"
    refused = client.post("/policies/sets/registries/apply/", {"group": "prod", "mode": "enforce"})
    assert refused.status_code == 400 and "tick this to enforce" in refused.content.decode()
    assert _assigned(prod) == {}
    done = client.post("/policies/sets/registries/apply/", {"group": "prod", "mode": "audit"})
    assert done.status_code == 302
    assert _assigned(prod) == {"allowed-registries": Mode.AUDIT, "no-latest-tag": Mode.AUDIT}
    assert PolicyAssignment.objects.get(group=prod, rule_key="allowed-registries").params == {
        "registries": ["registry.example.com/"]}
    edit = client.get("/policies/sets/registries/edit/").content.decode()
    assert "registry.example.com/" in edit
    assert client.post("/policies/sets/registries/delete/").status_code == 302
    assert len(_assigned(prod)) == 2, "deleting a set leaves what it assigned"


def test_the_api_creates_plans_and_applies_a_set(admin_user, prod):
    api = api_client_for(admin_user)
    created = api.post("/api/v1/policy-sets/", {"name": "small", "title": "Small",
                                                "items": [{"rule": "no-host-path"}, {"rule": "kubelet-version-skew",
                                                                                     "params": {"max_minor_skew": 1}}]},
                       format="json")
    assert created.status_code == 201, created.content
    assert created.json()["items"][1] == {"rule": "kubelet-version-skew", "params": {"max_minor_skew": 1}}
    for body, field in (({"name": "x", "title": "X", "items": [{"rule": "nope"}]}, "items"),
                        ({"name": "x", "title": "X", "items": [{"rule": "no-host-path"}, {"rule": "no-host-path"}]},
                         "items"),
                        ({"name": "small", "title": "X", "items": [{"rule": "no-host-path"}]}, "taken"),
                        ({"name": "Bad_Name", "title": "X", "items": [{"rule": "no-host-path"}]}, "name")):
        answer = api.post("/api/v1/policy-sets/", body, format="json")
        if field == "taken":
            assert answer.status_code == 409 and "exists already" in answer.json()["detail"]
        else:
            assert answer.status_code == 400 and field in answer.json()["errors"], (body, answer.json())
    plan = api.post("/api/v1/policy-sets/small/apply/", {"group": "prod", "mode": "enforce", "dry_run": True},
                    format="json")
    assert plan.status_code == 200 and _assigned(prod) == {}
    assert {s["rule"]: (s["action"], s["mode"]) for s in plan.json()} == {
        "no-host-path": ("add", "enforce"), "kubelet-version-skew": ("add", "audit")}
    applied = api.post("/api/v1/policy-sets/small/apply/", {"group": "prod", "mode": "audit"}, format="json")
    assert applied.status_code == 200 and _assigned(prod) == {"no-host-path": "audit", "kubelet-version-skew": "audit"}
    assert api.patch("/api/v1/policy-sets/production-baseline/", {"title": "Mine"}, format="json").status_code == 409
    assert api.delete("/api/v1/policy-sets/production-baseline/").status_code == 409
    assert api.post("/api/v1/policy-sets/small/apply/", {"group": "nope"}, format="json").status_code == 400
