"""FilterSets of rollouts, shared by pages and API."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from inventory.models import Team
from rollouts.choices import ACTIVE_ROLLOUT_STATES, DriftState, RolloutState
from rollouts.models import Drift, Rollout

ACTIVE = "active"  # running, waiting for a gate, or paused: what still needs someone


class RolloutFilterSet(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=[(ACTIVE, "active or paused"), *RolloutState.choices],
                                        method="filter_state")
    application = django_filters.CharFilter(field_name="application__name")
    application__name = django_filters.CharFilter(field_name="application__name")  # the API's older name for it
    team = django_filters.CharFilter(method="filter_team", label="Team (its applications)")

    class Meta:
        model = Rollout
        fields = ["state", "application", "application__name", "team"]

    def filter_state(self, queryset, name, value) -> QuerySet:
        if value == ACTIVE:
            return queryset.filter(state__in=[*ACTIVE_ROLLOUT_STATES, RolloutState.PAUSED])
        return queryset.filter(state=value) if value else queryset

    def filter_team(self, queryset, name, value) -> QuerySet:
        """The rollouts of applications the team owns, among the teams the user may see."""
        if not value:
            return queryset
        user = getattr(self.request, "user", None)
        return queryset.filter(application__owner_team__in=Team.objects.visible_to(user).filter(name=value.strip()))


class DriftFilterSet(django_filters.FilterSet):
    application = django_filters.CharFilter(field_name="deployed__application__name")
    cluster = django_filters.CharFilter(field_name="deployed__cluster__name")
    state = django_filters.MultipleChoiceFilter(choices=DriftState.choices)

    class Meta:
        model = Drift
        fields = ["application", "cluster", "state"]
