"""Teams, their members and the single sign-on mappings and identities."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

from inventory.choices import (
    GrantSource,
    TeamRole,
)
from inventory.models.clusters import Cluster, ClusterGroup, SelectorMixin
from inventory.querysets import (
    ClusterQuerySet,
    ScopedQuerySet,
    Visibility,
)
from inventory.validators import validate_selector


class Team(SelectorMixin, models.Model):
    """People who own part of the fleet: members with a role here, and a scope of clusters (the clusters of its
    groups plus every cluster its selector matches, now or later). A cluster may be in several teams' scopes."""

    name = models.SlugField(max_length=63, unique=True)
    description = models.TextField(blank=True)
    groups = models.ManyToManyField(ClusterGroup, blank=True, related_name="teams",
                                    help_text="The team owns every cluster of these groups")
    selector = models.CharField(max_length=1024, blank=True, validators=[validate_selector],
                                help_text="…and every cluster this selector matches (the groups' syntax)")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedQuerySet.as_manager()
    visibility = Visibility(team="pk")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("inventory:team_detail", args=[self.name])

    def scope_q(self, groups: list[ClusterGroup] | None = None) -> Q:
        """Clusters in scope as one condition: static members of its groups, their selectors, its own selector."""
        groups = list(self.groups.all()) if groups is None else groups
        q = self.parsed_selector.q()
        if groups:
            # A subquery, not a join: the condition can then also be an annotation (teams.scopes_of).
            q |= Q(pk__in=ClusterGroup.static_members.through.objects.filter(
                clustergroup_id__in=[g.pk for g in groups]).values("cluster_id"))
            for group in groups:
                q |= group.parsed_selector.q()
        return q

    def clusters(self) -> ClusterQuerySet:
        return Cluster.objects.filter(self.scope_q())


class TeamMember(models.Model):
    """One role of one person in one team; a person may hold several (operator and approver)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_roles")
    role = models.CharField(max_length=16, choices=TeamRole.choices)
    source = models.CharField(max_length=8, choices=GrantSource.choices, default=GrantSource.MANUAL)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedQuerySet.as_manager()
    visibility = Visibility(team="team_id")

    class Meta:
        ordering = ["team__name", "user__username", "role"]
        constraints = [models.UniqueConstraint(fields=["team", "user", "role"], name="one_grant_per_team_role")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.role} in {self.team_id}"


class RoleMapping(models.Model):
    """Single sign-on: people whose claim (default `groups`) holds `claim_value` get `role`, in `team` or, with
    no team, globally (viewer, operator, approver, admin). Re-applied at every login; removed with the claim."""

    claim_value = models.CharField(max_length=255)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="mappings")
    role = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedQuerySet.as_manager()
    visibility = Visibility()  # admins only

    class Meta:
        ordering = ["claim_value", "team__name", "role"]
        constraints = [models.UniqueConstraint(fields=["claim_value", "team", "role"], name="one_mapping",
                                               nulls_distinct=False)]

    def __str__(self) -> str:
        where = f"team {self.team_id}" if self.team_id else "global"
        return f"{self.claim_value} -> {where}: {self.role}"


class SsoIdentity(models.Model):
    """Who a user is at the identity provider: (issuer, subject) links a sign-in to one account, never the
    username (an IdP user named 'admin' does not become the local admin)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identity")
    issuer = models.CharField(max_length=512)
    subject = models.CharField(max_length=255)
    claim_values = models.JSONField(default=list, blank=True, help_text="The groups claim at the last sign-in")
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="one_account_per_subject")]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"
