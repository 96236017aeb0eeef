"""Attach, honestly (issue 30, item 5, in part): the least-privilege manifest is read-only by default, enforcement
and deployment separate, explained opt-ins; the connection test says which features the credentials allow and
names an API server that is already attached; attaching it a second time needs 'Attach anyway'."""

from __future__ import annotations

import html

import pytest
import yaml

from foundation.models import AuditEvent
from inventory import access, onboarding, services
from inventory.models import Cluster, Namespace
from tests.builders import make_cluster
from tests.inventory.test_direct_credentials import CERT

pytestmark = pytest.mark.django_db


def _kinds(manifest: str) -> set[str]:
    return {d["metadata"]["name"] for d in yaml.safe_load_all(manifest) if d["kind"] == "ClusterRole"}


def test_the_attach_page_offers_a_read_only_manifest_and_explains_each_opt_in(client, operator):
    client.force_login(operator)
    page = client.get("/clusters/attach/?method=token").content.decode()
    shown = page[page.index('<pre id="least-privilege-manifest">'):]
    shown = shown[:shown.index("</pre>")]
    assert "fleetweb-reader" in shown and "-enforcer" not in shown and "-deployer" not in shown
    assert 'id="opt-enforce"' in page and 'id="opt-deploy"' in page and "never\n      Secrets" in page
    for query, roles in (("", {"fleetweb-reader"}),
                         ("?enforce=on", {"fleetweb-reader", "fleetweb-reader-enforcer"}),
                         ("?deploy=on", {"fleetweb-reader", "fleetweb-reader-deployer"}),
                         ("?enforce=on&deploy=on", {"fleetweb-reader", "fleetweb-reader-enforcer",
                                                     "fleetweb-reader-deployer"})):
        partial = client.get(f"/clusters/attach/manifest/{query}", HTTP_HX_REQUEST="true").content.decode()
        text = partial.split(">", 1)[1].rsplit("</pre>", 1)[0]

        assert _kinds(html.unescape(text)) == roles, query
    assert _kinds(access.least_privilege_manifest()) == {"fleetweb-reader", "fleetweb-reader-enforcer",
                                                         "fleetweb-reader-deployer"}, "localfleet and agents: all"


@pytest.mark.parametrize(("existing", "new"), [
    ("https://127.0.0.1:6443", "https://127.0.0.1:6443/"),
    ("https://API.Example.com", "https://api.example.com:443"),
])
def test_the_same_api_server_is_recognised_however_it_is_written(existing, new):
    make_cluster("first", server=existing)
    assert services.already_attached([("", {"method": "token", "server": new})]) == {new: "first"}
    assert services.already_attached([("", {"method": "token", "server": "https://127.0.0.2:6443"})]) == {}


def test_untested_or_failing_credentials_are_attached_only_with_attach_anyway(client, operator):
    client.force_login(operator)
    form = {"method": "token", "server": "https://127.0.0.1:1", "ca_data": CERT, "token": "tok",
            "meta-name": "eks-new", "meta-environment": "prod", "meta-sync_interval": 60}
    untested = client.post("/clusters/attach/", form)
    assert untested.status_code == 400
    assert "Test the connection first: nothing is attached before its credentials passed a test" in \
        untested.content.decode()
    draft = untested.context["draft"]
    onboarding.request_test(draft, contexts=[], insecure=False, user=operator)
    onboarding.run_test(str(draft.pk))  # as the worker does: nothing listens there, so it fails
    failed = client.post("/clusters/attach/", {**form, "token": "", "draft": str(draft.pk)})
    assert failed.status_code == 400 and "The connection test did not pass" in failed.content.decode()
    assert not Cluster.objects.filter(name="eks-new").exists()
    assert not AuditEvent.objects.filter(action="cluster.attach", target_name="eks-new").exists()
    anyway = client.post("/clusters/attach/", {**form, "token": "", "draft": str(draft.pk),
                                               "meta-attach_anyway": "on"})
    assert anyway.status_code == 302 and Cluster.objects.get(name="eks-new").credential.open()["token"] == "tok"


def test_a_second_attach_of_an_api_server_is_refused_naming_its_cluster(operator):
    make_cluster("eks-prod", server="https://127.0.0.1:6443")
    second = [("eks-prod-again", {"method": "token", "server": "https://127.0.0.1:6443/", "ca_data": CERT,
                                  "token": "tok"})]
    with pytest.raises(services.AttachError) as refused:
        services.attach_many(second, user=operator, allow_same_server=False)
    assert refused.value.field == "attach_anyway"
    assert "eks-prod-again has the API server of cluster eks-prod" in refused.value.message
    assert not Cluster.objects.filter(name="eks-prod-again").exists()
    services.attach_many(second, user=operator, allow_same_server=True)
    assert Cluster.objects.filter(name="eks-prod-again").exists()


def test_the_connection_test_names_an_api_server_already_attached(operator):
    make_cluster("eks-prod", server="https://127.0.0.1:1")
    draft = onboarding.save_draft(user=operator, method="token", source={"credentials": {
        "method": "token", "server": "https://127.0.0.1:1", "ca_data": CERT, "token": "tok"}})
    onboarding.request_test(draft, contexts=[], insecure=False, user=operator)
    assert onboarding.run_test(str(draft.pk)) == "done"
    draft.refresh_from_db()
    [report] = draft.test_results
    warning = report["checks"][-1]
    assert warning["name"] == "not attached yet" and warning["optional"] and not warning["ok"]
    assert "already attached as cluster eks-prod" in warning["detail"]


def test_the_same_cluster_behind_another_url_is_known_by_its_kube_system_namespace(operator):
    cluster = make_cluster("eks-prod", server="https://10.0.0.1:6443")
    Namespace.objects.create(cluster=cluster, uid="0b9a-kube-system", name="kube-system")
    assert services.attached_by_uid(["0b9a-kube-system", "", "other"]) == {"0b9a-kube-system": "eks-prod"}
    via_lb = [("eks-prod-lb", {"method": "token", "server": "https://lb.example.com", "ca_data": CERT, "token": "t"})]
    with pytest.raises(services.AttachError) as refused:
        services.attach_many(via_lb, user=operator, allow_same_server=False, kube_system_uids=["0b9a-kube-system"])
    assert "the tested credentials reach cluster eks-prod (its kube-system namespace)" in refused.value.message
    assert not Cluster.objects.filter(name="eks-prod-lb").exists()
