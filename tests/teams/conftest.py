"""The two-team organisation the team tests share."""

from __future__ import annotations

import pytest

from inventory.people import services as team_services
from rollouts import services
from tests.builders import make_cluster, make_user, make_workload

MANIFESTS = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "nginx:1.27"}]}
"""


@pytest.fixture
def org(db, admin_user):
    """Two teams, each owning its clusters (by owner field) and one application; users in each role."""
    for name, env, owner in (("pay-prod", "prod", "payments"), ("pay-dev", "dev", "payments"),
                             ("shop-prod", "prod", "shop")):
        make_workload(make_cluster(name, environment=env, owner=owner, nodes=1), f"{name}-web")
    payments = team_services.save_team(user=admin_user, name="payments", selector="owner=payments")
    shop = team_services.save_team(user=admin_user, name="shop", selector="owner=shop")
    users = {"nobody": make_user("nobody"), "viewer": make_user("auditor", "viewer"), "admin": admin_user}
    for team, prefix in ((payments, "pay"), (shop, "shop")):
        for role in ("viewer", "operator", "approver"):
            users[f"{prefix}_{role}"] = member = make_user(f"{prefix}-{role}")
            team_services.add_member(team, member=member, role=role, user=admin_user)
    for name, team in (("pay-app", payments), ("shop-app", shop)):
        services.create_application(name=name, namespace=name, manifests_text=MANIFESTS, user=None, owner_team=team)
    return {"teams": {"payments": payments, "shop": shop}, "users": users}
