"""`make run` with local members seeds a demo baseline (the two built-in policy sets) once, and never into a database
with groups."""

import io

import pytest

from fleetweb.management.commands.run import Command
from governance.models import PolicyAssignment, PolicySet
from inventory.models import ClusterGroup
from tests.builders import make_cluster

pytestmark = pytest.mark.django_db


def test_demo_baseline_is_created_once_in_audit_mode():
    make_cluster("aws-eu-west", environment="prod", labels={"source": "localfleet"})
    command = Command(stdout=io.StringIO())
    command._demo_baseline()
    assert sorted(ClusterGroup.objects.values_list("name", flat=True)) == ["localfleet", "production"]
    assert set(PolicyAssignment.objects.values_list("mode", flat=True)) == {"audit"}
    for group, set_name in (("production", "production-baseline"), ("localfleet", "pod-security-restricted")):
        assert sorted(PolicyAssignment.objects.filter(group__name=group).values_list("rule_key", flat=True)) == \
            sorted(PolicySet.objects.get(name=set_name).rule_keys)
    assert PolicyAssignment.objects.count() == 16
    assert [c.name for c in ClusterGroup.objects.get(name="production").members()] == ["aws-eu-west"]
    command._demo_baseline()
    assert PolicyAssignment.objects.count() == 16
