"""Cluster selectors: Kubernetes syntax, errors with positions, and the DB and Python matchers agreeing."""

from __future__ import annotations

import pytest

from inventory import services
from inventory.models import Cluster, ClusterGroup
from inventory.selectors import Requirement, SelectorError, parse
from tests.builders import make_cluster


@pytest.mark.parametrize(("text", "expected"), [
    ("environment=prod", [Requirement("environment", "=", ("prod",))]),
    ("environment==prod", [Requirement("environment", "=", ("prod",))]),
    ("tier!=edge", [Requirement("tier", "!=", ("edge",))]),
    ("region in (eu-west,eu-north)", [Requirement("region", "in", ("eu-west", "eu-north"))]),
    ("region notin ( eu-west , eu-north )", [Requirement("region", "notin", ("eu-west", "eu-north"))]),
    ("gpu", [Requirement("gpu", "exists")]),
    ("!gpu", [Requirement("gpu", "!exists")]),
    ("example.com/team=shop", [Requirement("example.com/team", "=", ("shop",))]),
    ("tier=", [Requirement("tier", "=", ("",))]),
    ("environment=prod,region in (eu-west,eu-north),tier!=edge", [
        Requirement("environment", "=", ("prod",)), Requirement("region", "in", ("eu-west", "eu-north")),
        Requirement("tier", "!=", ("edge",))]),
    ("", []),
    ("   ", []),
])
def test_valid_selectors_parse(text, expected):
    assert list(parse(text).requirements) == expected


@pytest.mark.parametrize(("text", "position", "message"), [
    ("environment=prod,", 17, "expected a requirement after ','"),
    ("region in eu-west", 10, "expected '(' after 'in'"),
    ("region in (eu-west", 18, "expected ',' or ')'"),
    ("region in ()", 11, "needs at least one value"),
    ("tier=edge prod", 10, "expected ',' between requirements"),
    ("=prod", 0, "expected a key"),
    ("tier edge", 5, "expected '=', '!=', 'in' or 'notin' after 'tier'"),
    ("replicas>3", 8, "operator '>' is not supported"),
    ("-bad=x", 0, "is not a valid key"),
    ("tier=no spaces", 8, "expected ',' between requirements"),
    ("tier=-x", 5, "is not a valid value"),
    ("Example.com/x=y", 0, "invalid prefix"),
    ("!tier=edge", 5, "'!key' takes no operator"),
])
def test_invalid_selectors_name_the_position(text, position, message):
    with pytest.raises(SelectorError) as excinfo:
        parse(text)
    assert excinfo.value.position == position
    assert message in excinfo.value.message
    assert f"(at position {position + 1})" in str(excinfo.value)


SELECTORS = [
    "environment=prod", "environment!=prod", "region in (eu-west-1,us-east-1)", "region notin (eu-west-1)",
    "tier", "!tier", "tier=edge", "tier!=edge", "environment=prod,tier!=edge", "owner", "!owner",
    "example.com/team in (shop,payments)", "provider=aws", "name", "tier=",
]


@pytest.mark.django_db
@pytest.mark.parametrize("text", SELECTORS)
def test_database_and_python_matchers_agree(text):
    make_cluster("p-edge", environment="prod", region="eu-west-1", labels={"tier": "edge"})
    make_cluster("p-core", environment="prod", region="us-east-1", labels={"tier": "core",
                                                                          "example.com/team": "shop"}, owner="web")
    make_cluster("s-none", environment="staging", region="ap-south-1", labels={})
    make_cluster("d-empty", environment="dev", region="eu-west-1", labels={"tier": ""}, provider="aws")
    selector = parse(text)
    in_db = set(Cluster.objects.filter(selector.q()).values_list("name", flat=True))
    in_python = {c.name for c in Cluster.objects.all() if selector.matches(c)}
    assert in_db == in_python


@pytest.mark.django_db
def test_membership_is_dynamic_and_combines_static_members(admin_user):
    prod = make_cluster("prod-eu", environment="prod", region="eu-west-1")
    lab = make_cluster("lab", environment="dev")
    group = services.create_group(name="prod", selector="environment=prod", static_members=[lab], user=admin_user)
    assert {c.name for c in group.members()} == {"prod-eu", "lab"}
    # A cluster attached later that matches joins at once, and one edited out leaves.
    make_cluster("prod-us", environment="prod", region="us-east-1")
    assert {c.name for c in group.members()} == {"prod-eu", "lab", "prod-us"}
    services.update_cluster(prod, user=admin_user, environment="staging")
    assert {c.name for c in group.members()} == {"lab", "prod-us"}
    assert [g.name for g in services.groups_of(lab)] == ["prod"]
    assert {c.name for c in services.membership([group])[group.pk]} == {"lab", "prod-us"}


@pytest.mark.django_db
def test_empty_selector_means_static_members_only(admin_user):
    make_cluster("a")
    group = ClusterGroup.objects.create(name="none")
    assert list(group.members()) == []
    assert services.membership([group])[group.pk] == []
