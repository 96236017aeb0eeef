"""A revision's check after save (rollouts.dryrun, in a worker) and the policy gate at stage start: a save never waits
for a member; what an enforced Fleetweb policy refuses is shown as refused on that cluster at save, on the approval
page, and refused again at stage start with the same words; nothing of another team's clusters is named. (The members'
own dry run, for real: tests/e2e/test_deploy.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from django.utils import timezone

from foundation.models import AuditEvent
from governance.choices import Mode
from governance.models import PolicyAssignment
from inventory.models import ClusterGroup, Team, TeamMember
from rollouts import dryrun, gates, services, tasks
from rollouts.choices import RolloutState, StageState, TargetState
from rollouts.models import Approval, Revision, Stage, Target
from tests.builders import make_cluster, make_user
from tests.rollouts.fakes import run

pytestmark = pytest.mark.django_db

PRIVILEGED = yaml.safe_dump({
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "web", "image": "registry.example.com/web:1",
                                                   "securityContext": {"privileged": True}}]}}}})
WORDS = ("refused by prod-eu: policy no-privileged-containers is enforced there (Deployment web/web: privileged "
         "container(s): web)")


@pytest.fixture
def enforced_on_prod(fleet):
    """prod-eu enforces no-privileged-containers; the fake fleet's a-* and b-1 clusters enforce nothing."""
    make_cluster("prod-eu", environment="prod", labels={"ring": "p"})
    group = ClusterGroup.objects.create(name="production", selector="environment=prod")
    PolicyAssignment.objects.create(group=group, rule_key="no-privileged-containers", mode=Mode.ENFORCE)
    return fleet


def test_a_save_waits_for_no_member_and_the_worker_files_the_verdict_once_with_its_audit_event(operator):
    make_cluster("a-1")  # connected by its row, nothing answers at its address
    app = services.create_application(name="web", namespace="web", manifests_text=PRIVILEGED, user=operator)
    revision = app.latest_revision
    assert revision.validation["state"] == dryrun.CHECKING and revision.validation["requested_at"]
    assert dryrun.run(revision.pk) == dryrun.UNCHECKED
    revision.refresh_from_db()
    assert revision.validation["members"][0]["cluster"] == "a-1" and not revision.validation["members"][0]["checked"]
    event = AuditEvent.objects.get(action="application.dry_run")
    assert event.after == {"revision": 1, "digest": revision.digest, "state": "unchecked", "refused_on": []}
    assert dryrun.run(revision.pk) == "gone", "a verdict is filed once"
    assert AuditEvent.objects.filter(action="application.dry_run").count() == 1


def test_an_enforced_policy_makes_the_revision_refused_on_that_cluster_with_its_words(enforced_on_prod, operator):
    app = services.create_application(name="web", namespace="web", manifests_text=PRIVILEGED, user=operator)
    dryrun.run(app.latest_revision.pk)
    validation = Revision.objects.get(pk=app.latest_revision.pk).validation
    assert validation["state"] == dryrun.SOME_REFUSED, "not passed while a cluster that may receive it refuses it"
    assert validation["refused_on"] == ["prod-eu"]
    assert [p["words"] for p in validation["policies"] if p["enforced"]] == [WORDS]
    assert WORDS in dryrun.summary(validation)


def test_a_stage_onto_a_refusing_cluster_fails_before_any_approver_is_asked_with_the_same_words(
        enforced_on_prod, operator):
    app = services.create_application(name="web", namespace="web", manifests_text=PRIVILEGED, user=operator)
    rollout = services.create_rollout(revision=app.latest_revision, user=operator, stages=[
        {"name": "dev", "selector": "ring=a"}, {"name": "prod", "selector": "ring=p", "approvals_required": 1}])
    enforced_on_prod.ready.update({"a-1", "a-2", "a-3"})
    rollout = run(rollout, 12)
    assert rollout.state == RolloutState.FAILED
    prod = Stage.objects.get(rollout=rollout, name="prod")
    assert prod.state == StageState.FAILED and prod.message == f"stage 'prod' refused before it started: {WORDS}"
    assert rollout.message == prod.message
    target = Target.objects.get(stage=prod)
    assert (target.state, target.message) == (TargetState.FAILED, f"not applied: {WORDS}")
    assert prod.awaiting_since is None and not Approval.objects.exists(), "no approver was asked"
    assert [c for c, _r in enforced_on_prod.pushed] == ["a-1", "a-2", "a-3"], "nothing reached prod-eu"


def test_refused_targets_within_the_failure_budget_fail_alone_with_the_same_words(enforced_on_prod, operator):
    make_cluster("prod-us", environment="prod", labels={"ring": "p"}, region="us-east-1")
    PolicyAssignment.objects.filter(rule_key="no-privileged-containers").update(
        group=ClusterGroup.objects.create(name="eu-prod", selector="environment=prod,region=eu-west-1"))
    app = services.create_application(name="web", namespace="web", manifests_text=PRIVILEGED, user=operator)
    rollout = services.create_rollout(revision=app.latest_revision, user=operator, stages=[
        {"name": "prod", "selector": "ring=p", "approvals_required": 1, "failures_allowed": 1}])
    run(rollout, 3)
    stage = Stage.objects.get(rollout=rollout)
    assert stage.state == StageState.AWAITING_APPROVAL
    from rollouts import approvals

    approvals.approve_stage(stage, user=make_user("anna", "approver"))
    enforced_on_prod.ready.add("prod-us")
    rollout = run(rollout, 10)
    assert rollout.state == RolloutState.SUCCEEDED
    assert Target.objects.get(cluster__name="prod-eu").message == f"not applied: {WORDS}"
    assert [c for c, _r in enforced_on_prod.pushed] == ["prod-us"]


def test_the_approval_page_names_what_each_clusters_policies_say(enforced_on_prod, operator, client):
    PolicyAssignment.objects.create(group=ClusterGroup.objects.create(name="ring-b", selector="ring=b"),
                                    rule_key="no-privileged-containers", mode=Mode.AUDIT)
    app = services.create_application(name="web", namespace="web", manifests_text=PRIVILEGED, user=operator)
    rollout = services.create_rollout(revision=app.latest_revision, user=operator, stages=[
        {"name": "b", "selector": "ring=b", "approvals_required": 1}])
    run(rollout, 3)
    assert Stage.objects.get(rollout=rollout).state == StageState.AWAITING_APPROVAL
    client.force_login(make_user("anna", "approver"))
    page = client.get(f"/rollouts/{rollout.pk}/").content.decode()
    assert "violates no-privileged-containers on b-1 (audit only: Deployment web/web: privileged container(s): web)" \
        in page


def test_a_rollout_of_a_revision_still_being_checked_checks_it_first(enforced_on_prod, operator):
    app = services.create_application(name="web", namespace="web", manifests_text=PRIVILEGED, user=operator)
    rollout = services.create_rollout(revision=app.latest_revision, user=operator,
                                      stages=[{"name": "prod", "selector": "ring=p", "approvals_required": 1}])
    assert app.latest_revision.validation["state"] == dryrun.CHECKING, "its worker has not run"
    rollout = run(rollout, 3)
    assert Revision.objects.get(pk=app.latest_revision.pk).validation["state"] == dryrun.SOME_REFUSED
    assert AuditEvent.objects.filter(action="application.dry_run").count() == 1
    assert rollout.state == RolloutState.FAILED and WORDS in rollout.message


def test_the_policy_gate_waits_for_the_check_without_asking_approvers(enforced_on_prod, operator):
    app = services.create_application(name="web", namespace="web", manifests_text=PRIVILEGED.replace(
        "privileged: true", "privileged: false"), user=operator)
    rollout = services.create_rollout(revision=app.latest_revision, user=operator,
                                      stages=[{"name": "prod", "selector": "ring=p", "approvals_required": 1}])
    stage = Stage.objects.get(rollout=rollout)
    verdict = gates.entry(stage, timezone.now())
    assert not verdict.passed and verdict.not_yet and not verdict.refused
    assert verdict.message.startswith("waiting for the dry run of revision 1")
    dryrun.run(app.latest_revision.pk)
    stage = Stage.objects.get(pk=stage.pk)
    verdict = gates.entry(stage, timezone.now())
    assert not verdict.not_yet and verdict.message == "0 of 1 approval(s)"


def test_a_lost_check_is_queued_again_by_beat(operator):
    app = services.create_application(name="web", namespace="web", manifests_text=PRIVILEGED, user=operator)
    revision = app.latest_revision
    assert dryrun.stale(60) == []
    old = (timezone.now() - timedelta(minutes=5)).isoformat()
    Revision.objects.filter(pk=revision.pk).update(validation={"state": dryrun.CHECKING, "requested_at": old})
    assert dryrun.stale(60) == [revision.pk]
    assert tasks.requeue_dry_runs() == 1


def test_a_team_approver_reads_the_check_without_the_names_of_clusters_outside_its_scope(
        enforced_on_prod, operator, client, api_as):
    team = Team.objects.create(name="payments", selector="ring=b")
    member = make_user("pat")
    TeamMember.objects.create(team=team, user=member, role="approver")
    app = services.create_application(name="web", namespace="web", manifests_text=PRIVILEGED, user=operator,
                                      approver_team=team)
    dryrun.run(app.latest_revision.pk)
    assert "prod-eu" in str(Revision.objects.get(pk=app.latest_revision.pk).validation)
    body = api_as(member).get(f"/api/v1/applications/{app.pk}/revisions/").json()["results"][0]["validation"]
    assert "prod-eu" not in str(body) and "a-1" not in str(body)
    assert body["hidden_clusters"] == 2, "a-1 (its dry run: one member per minor) and prod-eu (its policy), counted"
    assert body["state"] == dryrun.SOME_REFUSED and body["refused_on"] == [] and body["policies"] == []
    client.force_login(member)
    page = client.get(f"/applications/{app.name}/").content.decode()
    partial = client.get(f"/applications/{app.name}/revisions/1/check/", HTTP_HX_REQUEST="true").content.decode()
    for html in (page, partial):
        assert "prod-eu" not in html and "you cannot see also answered" in html


def test_the_revision_cell_polls_while_checking_and_stops_when_the_verdict_is_in(enforced_on_prod, operator, client):
    app = services.create_application(name="web", namespace="web", manifests_text=PRIVILEGED, user=operator)
    client.force_login(operator)
    url = f"/applications/{app.name}/revisions/1/check/"
    checking = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "checking…" in checking and f'hx-get="{url}"' in checking
    dryrun.run(app.latest_revision.pk)
    done = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-get" not in done and "refused by prod-eu" in done and WORDS in done
    assert client.get("/applications/web/revisions/9/check/").status_code == 404
    stranger = make_user("sam")
    client.force_login(stranger)
    assert client.get(url).status_code in (403, 404)


def test_the_stage_builder_names_what_the_chosen_revision_is_refused_on_among_the_stages_clusters(
        enforced_on_prod, operator, client):
    app = services.create_application(name="web", namespace="web", manifests_text=PRIVILEGED, user=operator)
    revision = app.latest_revision
    client.force_login(operator)
    checking = client.get("/rollouts/stages/preview/", {"stage-0-selector": "ring=p", "revision": revision.pk},
                          HTTP_HX_REQUEST="true").content.decode()
    assert "Revision 1 is still being checked" in checking
    dryrun.run(revision.pk)
    prod = client.get("/rollouts/stages/preview/", {"stage-0-selector": "ring=p", "revision": revision.pk},
                      HTTP_HX_REQUEST="true").content.decode()
    assert WORDS in prod
    dev = client.get("/rollouts/stages/preview/", {"stage-0-selector": "ring=a", "revision": revision.pk},
                     HTTP_HX_REQUEST="true").content.decode()
    assert "refused by" not in dev and 'data-cluster="a-1"' in dev
    stranger = make_user("sam")  # of another team: neither the application nor prod-eu is theirs to read
    TeamMember.objects.create(team=Team.objects.create(name="other", selector="ring=p"), user=stranger,
                              role="operator")
    client.force_login(stranger)
    hidden = client.get("/rollouts/stages/preview/", {"stage-0-selector": "ring=p", "revision": revision.pk},
                        HTTP_HX_REQUEST="true").content.decode()
    assert 'data-cluster="prod-eu"' in hidden and "refused by" not in hidden and "being checked" not in hidden
