"""End to end on real members: a revision that a Fleetweb policy enforced on the prod member refuses is shown as
refused there when it is checked after save (by Fleetweb's own rule and by the member's admission answering the
dry run), the approver is never asked, and the prod stage is refused at its start with the same words; the earlier
stage went on (issue: the dry run tells the truth)."""

from __future__ import annotations

import pytest
import yaml
from kubernetes import client as k8s

from governance import enforcement
from governance import services as governance_services
from governance.choices import EnforcementState, Mode
from governance.models import Enforcement
from inventory.models import ClusterGroup
from rollouts import dryrun
from rollouts.choices import RolloutState, StageState, TargetState
from rollouts.models import Application, Approval, Rollout, Target
from tests.conftest import wait_for
from tests.e2e.test_governance import _create_pod, _pod
from tests.e2e.test_rollouts import app_yaml, live_deployment

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PROD = "aws-eu-west"


def privileged_app() -> str:
    docs = list(yaml.safe_load_all(app_yaml("1.0")))
    docs[0]["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    return yaml.safe_dump_all(docs)


@pytest.fixture
def enforced(fleet, admin_user, celery_worker):
    """no-privileged-containers enforced on the prod member, installed there for real and answering."""
    group = ClusterGroup.objects.get(name="prod")
    assignment = governance_services.create_assignment(group=group, rule_key="no-privileged-containers",
                                                       user=admin_user, mode=Mode.ENFORCE)
    wait_for(lambda: Enforcement.objects.filter(assignment=assignment, state=EnforcementState.INSTALLED).exists(),
             timeout=90, what="the policy installed on the prod member")
    handle = fleet["members"][PROD]
    wait_for(lambda: _create_pod(handle, "default", _pod("probe", privileged=True)), timeout=30,
             what="the prod member's admission to refuse a privileged pod")
    yield fleet
    with handle.admin_api() as api:
        admission = k8s.AdmissionregistrationV1Api(api)
        for binding in admission.list_validating_admission_policy_binding(label_selector=enforcement.SELECTOR).items:
            admission.delete_validating_admission_policy_binding(binding.metadata.name)
        for policy in admission.list_validating_admission_policy(label_selector=enforcement.SELECTOR).items:
            admission.delete_validating_admission_policy(policy.metadata.name)


def test_a_revision_the_prod_policy_refuses_is_refused_there_at_save_and_again_at_stage_start(
        enforced, celery_beat, operator, api_as):
    created = api_as(operator).post("/api/v1/applications/", {"name": "priv", "namespace": "priv",
                                                              "manifests": privileged_app()}, format="json")
    assert created.status_code == 201, created.json()
    app = Application.objects.get(pk=created.json()["id"])
    revision = app.latest_revision

    def verdict():
        revision.refresh_from_db(fields=["validation"])
        return revision.validation if revision.validation["state"] != dryrun.CHECKING else None

    checked = wait_for(verdict, timeout=60, what="the revision's check")
    assert checked["state"] == dryrun.SOME_REFUSED, "not passed while the prod member refuses it"
    assert PROD in checked["refused_on"]
    words = [p["words"] for p in checked["policies"] if p["enforced"]]
    assert words == [f"refused by {PROD}: policy no-privileged-containers is enforced there (Deployment priv/web: "
                     "privileged container(s): web)"]
    prod_dry_run = [m for m in checked["members"] if m["cluster"] == PROD]
    if prod_dry_run:  # asked when it is the first member of its Kubernetes minor: its admission's refusal is a finding
        assert prod_dry_run[0]["checked"] and "Fleetweb policy no-privileged-containers" in \
            prod_dry_run[0]["problems"][0], prod_dry_run

    response = api_as(operator).post("/api/v1/rollouts/", {"revision": revision.pk, "stages": [
        {"name": "canary", "selector": "name=gke-us-central", "health_deadline": 90},
        {"name": "production", "group": "prod", "health_deadline": 90}]}, format="json")
    assert response.status_code == 201, response.json()
    rollout = Rollout.objects.get(pk=response.json()["id"])
    wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state == RolloutState.FAILED, timeout=150,
             what="the rollout to stop at the prod stage")
    prod_stage = rollout.stages.get(index=1)
    assert rollout.stages.get(index=0).state == StageState.SUCCEEDED, "the canary went on"
    assert prod_stage.state == StageState.FAILED
    assert prod_stage.message == f"stage 'production' refused before it started: {words[0]}"
    target = Target.objects.get(stage=prod_stage)
    assert (target.state, target.message) == (TargetState.FAILED, f"not applied: {words[0]}")
    assert prod_stage.awaiting_since is None and not Approval.objects.filter(stage=prod_stage).exists()
    assert live_deployment(enforced["members"][PROD], "priv") is None, "nothing reached prod"
    assert live_deployment(enforced["members"]["gke-us-central"], "priv") is not None
