"""Attacks on the approval an operator might try, each of which must fail: through the service, the page and the API.

Each test asserts the refusal (status and message) and that nothing changed: no approval counted, nothing
applied, the record present.
"""

from __future__ import annotations

import pytest
import yaml

from foundation.models import AuditEvent
from inventory.models import Cluster, ClusterGroup
from inventory.services import AttachError, create_group, update_cluster
from rollouts import approvals, engine, rendering, services
from rollouts.choices import RolloutState, StageState, TargetState
from rollouts.models import Approval, Rollout, Target
from tests.builders import make_cluster, make_user
from tests.fakemember import FakeMembers

pytestmark = pytest.mark.django_db

WEB = yaml.safe_dump({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                      "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                               "template": {"metadata": {"labels": {"app": "web"}},
                                            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})


@pytest.fixture
def applied(monkeypatch):
    """What the engine sends to clusters, (cluster, objects) per push: the members are the port's fake adapter,
    everything else is real."""
    return FakeMembers().install(monkeypatch).pushes


@pytest.fixture
def prod_rollout(operator, admin_user):
    """web r1 rolled out to one prod cluster (in group `prod`), its stage awaiting approval."""
    make_cluster("prod-1", environment="prod", labels={"tier": "web"})
    create_group(name="prod", selector="environment=prod", user=admin_user)
    app = services.create_application(name="web", namespace="web", manifests_text=WEB, user=operator)
    rollout = services.create_rollout(revision=app.latest_revision, user=operator,
                                      stages=[{"name": "production", "selector": "environment=prod"}])
    engine.step_once(rollout.pk)  # pending -> running
    engine.step_once(rollout.pk)  # the stage reaches a prod cluster: it awaits an approval
    assert rollout.stages.get().state == StageState.AWAITING_APPROVAL
    return rollout


def _run(rollout, steps: int = 6) -> None:
    for _ in range(steps):
        engine.step_once(rollout.pk)


# -- skipping the production approval ---------------------------------------------------------


def test_operator_cannot_move_a_prod_cluster_out_of_prod(operator, client, api_as):
    cluster = make_cluster("prod-1", environment="prod")
    with pytest.raises(AttachError) as excinfo:
        update_cluster(cluster, user=operator, environment="dev")
    assert excinfo.value.status == 403 and "Only admins may move prod-1 out of prod" in excinfo.value.message
    response = api_as(operator).patch(f"/api/v1/clusters/{cluster.pk}/", {"environment": "dev"}, format="json")
    assert response.status_code == 403 and "out of prod" in response.json()["detail"]
    client.force_login(operator)
    response = client.post("/clusters/prod-1/edit/", {"environment": "dev", "region": "eu-west-1", "owner": "",
                                                      "cost_center": "", "labels": "", "sync_interval": 60})
    assert response.status_code == 403 and b"out of prod" in response.content
    assert Cluster.objects.get(name="prod-1").environment == "prod"
    assert not AuditEvent.objects.filter(action="cluster.update").exists()


def test_operator_cannot_skip_prod_approval_by_relabelling(operator, admin_user, applied):
    """The stage was made for a dev cluster (no approval needed); the cluster is prod again when it starts."""
    cluster = make_cluster("prod-1", environment="prod")
    update_cluster(cluster, user=admin_user, environment="dev")  # only an admin can, and it is on the record
    app = services.create_application(name="web", namespace="web", manifests_text=WEB, user=operator)
    rollout = services.create_rollout(revision=app.latest_revision, user=operator,
                                      stages=[{"name": "all", "selector": "name=prod-1", "approvals_required": 0}])
    assert rollout.stages.get().approvals_required == 0
    update_cluster(Cluster.objects.get(pk=cluster.pk), user=admin_user, environment="prod")
    _run(rollout)
    stage = rollout.stages.get()
    assert stage.state == StageState.AWAITING_APPROVAL and stage.approvals_required == 1
    assert "reaches prod cluster(s) prod-1" in stage.message
    assert applied == [], "nothing reached the prod cluster without an approval"
    assert list(AuditEvent.objects.filter(action="cluster.update").values_list("actor__username", flat=True)) == [
        "ada-admin", "ada-admin"]


# -- changing what prod receives after approval -----------------------------------------------


def test_operator_cannot_change_the_override_after_approval(prod_rollout, operator, approver, applied, api_as):
    stage = prod_rollout.stages.get()
    approvals.approve_stage(stage, user=approver, comment="1.27 is fine")
    approved_digest = Target.objects.get(stage=stage).rendered_digest
    response = api_as(operator).put(f"/api/v1/applications/{prod_rollout.application.pk}/overrides/prod/",
                                    {"image_tags": {"web": "evil"}}, format="json")
    assert response.status_code == 200
    approval = Approval.objects.get(stage=stage)
    assert approval.voided_at is not None and "override of web for group prod was changed by otto-operator" in \
        approval.void_reason
    assert approvals.valid_approvals(stage) == []
    _run(prod_rollout)
    assert Rollout.objects.get(pk=prod_rollout.pk).stages.get().state == StageState.AWAITING_APPROVAL
    assert applied == [], "the unapproved image never left Fleetweb"
    target = Target.objects.get(stage=stage)
    assert target.rendered_digest != approved_digest
    assert "nginx:evil" in str(target.rendered), "the approver is now shown what would really be applied"


def test_operator_cannot_move_the_cluster_into_another_override_after_approval(prod_rollout, operator, admin_user,
                                                                               approver, applied):
    group = create_group(name="canary-web", selector="tier=canary", user=admin_user)
    services.set_override(prod_rollout.application, group=group, user=admin_user, image_tags={"web": "evil"})
    stage = prod_rollout.stages.get()
    approvals.approve_stage(stage, user=approver)
    cluster = Cluster.objects.get(name="prod-1")
    update_cluster(cluster, user=operator, labels={"tier": "canary"})  # now in canary-web: another override
    assert Approval.objects.get(stage=stage).voided_at is not None
    assert "fields or labels changed" in Approval.objects.get(stage=stage).void_reason
    _run(prod_rollout)
    assert applied == []
    assert prod_rollout.stages.get().state == StageState.AWAITING_APPROVAL


def test_what_is_applied_is_exactly_what_was_approved(prod_rollout, approver, applied):
    stage = prod_rollout.stages.get()
    shown = rendering.stage_digest(stage)
    approvals.approve_stage(stage, user=approver, seen_digest=shown)
    _run(prod_rollout)
    assert [name for name, _ in applied] == ["prod-1"]
    target = Target.objects.get(stage=stage)
    assert rendering.objects_digest(applied[0][1]) == target.rendered_digest == \
        Approval.objects.get().digests[str(target.cluster_id)]
    started = AuditEvent.objects.get(action="rollout.stage_started")
    assert started.after["stage_digest"] == shown and started.after["approved_by"] == ["anna-approver"]


def test_an_approval_of_something_other_than_what_was_shown_is_refused(prod_rollout, approver, admin_user, client):
    stage = prod_rollout.stages.get()
    shown = rendering.stage_digest(stage)
    services.set_override(prod_rollout.application, group=ClusterGroup.objects.get(name="prod"), user=admin_user,
                          replicas=5)
    client.force_login(approver)
    response = client.post(f"/rollouts/{prod_rollout.pk}/stages/0/approve/", {"stage_digest": shown}, follow=True)
    assert "changed since you opened it" in response.content.decode()
    assert not Approval.objects.filter(stage=stage).exists()


def test_the_engine_never_applies_objects_no_approval_covered(prod_rollout, approver, applied):
    stage = prod_rollout.stages.get()
    approvals.approve_stage(stage, user=approver)
    _run(prod_rollout, steps=1)  # the gate opens: the stage starts with the covered digests
    # Someone writes the frozen objects behind Fleetweb's back (database access, a bug): not what was approved.
    Target.objects.filter(stage=stage).update(rendered=[{"kind": "ConfigMap"}], rendered_digest="0" * 64)
    _run(prod_rollout)
    target = Target.objects.get(stage=stage)
    assert target.state == TargetState.FAILED and "not the ones the approval covered" in target.message
    assert applied == []


# -- approving one's own change ---------------------------------------------------------------


def test_revision_author_cannot_approve_it(prod_rollout, api_as, client):
    author = make_user("rev-author", "operator", "approver")
    app = prod_rollout.application
    revision = services.create_revision(app, manifests_text=WEB.replace("1.27", "1.28"), user=author)
    requester = make_user("requester", "operator")
    rollout = services.create_rollout(revision=revision, user=requester,
                                      stages=[{"name": "production", "selector": "environment=prod"}])
    _run(rollout, steps=2)
    stage = rollout.stages.get()
    with pytest.raises(services.RolloutError) as excinfo:
        approvals.approve_stage(stage, user=author)
    assert excinfo.value.status == 403 and "You wrote revision 2" in str(excinfo.value)
    response = api_as(author).post(f"/api/v1/rollouts/{rollout.pk}/approve/", {"comment": "lgtm"}, format="json")
    assert response.status_code == 403 and "You wrote revision 2" in response.json()["detail"]
    client.force_login(author)
    assert client.post(f"/rollouts/{rollout.pk}/stages/0/approve/").status_code == 403
    assert not Approval.objects.filter(stage=stage).exists()
    assert [s.rollout_id for s in approvals.pending_approvals_for(author)] == [prod_rollout.pk], \
        "the author is asked about the rollout they did not write, not their own"


def test_override_author_cannot_approve_it(prod_rollout, admin_user, api_as):
    author = make_user("override-author", "operator", "approver")
    services.set_override(prod_rollout.application, group=ClusterGroup.objects.get(name="prod"), user=author,
                          replicas=3)
    response = api_as(author).post(f"/api/v1/rollouts/{prod_rollout.pk}/approve/", {}, format="json")
    assert response.status_code == 403 and "You wrote the override for group prod" in response.json()["detail"]
    assert not Approval.objects.exists()
    assert list(approvals.pending_approvals_for(author)) == []


def test_n_approvals_are_n_people_none_of_them_excluded(prod_rollout, approver):
    from rollouts.models import Stage

    Stage.objects.filter(rollout=prod_rollout).update(approvals_required=2)
    stage = prod_rollout.stages.get()
    approvals.approve_stage(stage, user=approver)
    with pytest.raises(services.RolloutError):
        approvals.approve_stage(stage, user=approver)
    _run(prod_rollout)
    assert prod_rollout.stages.get().state == StageState.AWAITING_APPROVAL, "one person is one approval"


def test_rollback_is_an_operators_emergency_action_announced_and_audited(prod_rollout, operator, approver, applied,
                                                                         settings, monkeypatch,
                                                                         django_capture_on_commit_callbacks):
    from rollouts import tasks

    approvals.approve_stage(prod_rollout.stages.get(), user=approver)
    _run(prod_rollout)
    assert Rollout.objects.get(pk=prod_rollout.pk).state == RolloutState.SUCCEEDED
    settings.FLEETWEB_WEBHOOK_URL = "http://127.0.0.1:9/hook"
    sent = []
    monkeypatch.setattr(tasks.send_webhook, "delay", lambda payload: sent.append(payload))
    monkeypatch.setattr(tasks.advance_rollout, "delay", lambda pk: None)
    with django_capture_on_commit_callbacks(execute=True):
        services.rollback_rollout(prod_rollout, user=operator)
    assert Rollout.objects.get(pk=prod_rollout.pk).state == RolloutState.ROLLING_BACK
    assert AuditEvent.objects.filter(action="rollout.rollback", actor=operator).exists()
    assert [p["event"] for p in sent] == ["rollout.rollback_requested"]
