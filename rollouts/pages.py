"""What rollouts add to inventory's pages (registered in `RolloutsConfig.ready` through `inventory.extensions`)."""

from __future__ import annotations

from django.db.models import Count, Q
from django.template.defaultfilters import pluralize
from django.urls import reverse

from inventory import extensions
from rollouts import corrections, ownership
from rollouts.choices import ACTIVE_ROLLOUT_STATES, StageState
from rollouts.models import Application, Deployed, Rollout, Stage


def overview_cards(user) -> list[dict]:
    """Active rollouts, and stages waiting for an approval, for the overview (two counts in one query each)."""
    active = Rollout.objects.visible_to(user).aggregate(n=Count("pk", filter=Q(state__in=ACTIVE_ROLLOUT_STATES)))["n"]
    waiting = Stage.objects.filter(state=StageState.AWAITING_APPROVAL,
                                   rollout__in=Rollout.objects.visible_to(user)).count()
    return [{"id": "card-rollouts", "value": active, "label": f"active rollout{pluralize(active)}",
             "url": reverse("rollouts:rollout_list") + "?state=active"},
            {"id": "card-awaiting", "value": waiting, "label": f"stage{pluralize(waiting)} awaiting approval",
             "url": reverse("rollouts:my_approvals")}]


def applications_tab(cluster, page_number, user=None) -> dict:
    """The applications Fleetweb deployed to this cluster that the user may see, with their drift, and how many
    others run here (another team's or the platform's: counted, not named; the cluster's workloads show them)."""
    here = Deployed.objects.filter(cluster=cluster)
    deployments = (here.filter(application__in=Application.objects.visible_to(user))
                   .select_related("application", "cluster", "revision", "drift").order_by("application__name"))
    drifts = corrections.rows_for(deployments)
    return {"drifts": drifts, "on_cluster": True, "others_here": here.count() - len(drifts)}


def register() -> None:
    extensions.register(cards=overview_cards, tab=("applications", applications_tab), holders=ownership.holders_of)
