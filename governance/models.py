"""Governance models: policy assignments, violations, compliance history and enforcement."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.urls import reverse

from governance import rules
from governance.choices import EnforcementState, Mode, Severity
from governance.querysets import GovernanceQuerySet
from inventory.models import Cluster, ClusterGroup
from inventory.querysets import Visibility


def default_excluded_namespaces() -> list[str]:
    return list(rules.DEFAULT_EXCLUDED_NAMESPACES)


class PolicyAssignment(models.Model):
    """A rule of the catalog with its parameters, bound to a group in audit or enforce mode."""

    group = models.ForeignKey(ClusterGroup, on_delete=models.CASCADE, related_name="assignments")
    rule_key = models.CharField(max_length=64, help_text="Key of a rule in governance.rules")
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.AUDIT)
    params = models.JSONField(default=dict, blank=True)
    excluded_namespaces = models.JSONField(default=default_excluded_namespaces, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    objects = GovernanceQuerySet.as_manager()
    visibility = Visibility(group="group_id")

    class Meta:
        ordering = ["group__name", "rule_key"]
        constraints = [models.UniqueConstraint(fields=["group", "rule_key"], name="assignment_group_rule")]

    def __str__(self) -> str:
        return f"{self.rule_key} on {self.group.name} ({self.mode})"

    @property
    def rule(self) -> rules.Rule:
        return rules.get(self.rule_key)

    @property
    def severity(self) -> str:
        return self.rule.severity

    def policy_name(self) -> str:
        """Name of the ValidatingAdmissionPolicy (and binding) enforce mode installs."""
        return f"fleetweb-{self.rule_key}-{self.pk}"


class Violation(models.Model):
    """One object that breaks an assigned rule: open while it does, resolved when it stopped, re-opened if back."""

    assignment = models.ForeignKey(PolicyAssignment, on_delete=models.CASCADE, related_name="violations")
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="violations")
    rule_key = models.CharField(max_length=64)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    object_kind = models.CharField(max_length=32)
    namespace = models.CharField(max_length=253, blank=True)
    object_name = models.CharField(max_length=253)
    message = models.TextField()
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    reopened_at = models.DateTimeField(null=True, blank=True, help_text="Last time it came back after being resolved")
    times_reopened = models.PositiveIntegerField(default=0)

    objects = GovernanceQuerySet.as_manager()

    class Meta:
        ordering = ["resolved_at", "cluster__name", "rule_key", "namespace", "object_name"]
        constraints = [models.UniqueConstraint(fields=["assignment", "cluster", "object_kind", "namespace",
                                                       "object_name"], name="violation_identity")]
        indexes = [models.Index(fields=["cluster", "resolved_at"]), models.Index(fields=["rule_key", "resolved_at"]),
                   models.Index(fields=["resolved_at", "severity"])]

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.rule_key}: {self.object_kind} {where}{self.object_name} in {self.cluster_id}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    @property
    def seen_until(self) -> datetime | None:
        """Last time it was seen: the cluster's latest evaluation while open (open violations are not
        rewritten on every evaluation), the evaluation before its resolution once resolved."""
        if self.resolved_at is None:
            compliance = getattr(self.cluster, "compliance", None)
            if compliance is not None and compliance.evaluated_at > self.last_seen:
                return compliance.evaluated_at
        return self.last_seen


class Tallies(models.Model):
    """Results added up by severity (checks, passed, open violations), so that scores and counts are sums over one
    row per cluster (or per cluster and group) rather than aggregates over every result or violation
    (`compliance.TALLIES`, `compliance.tallies`)."""

    critical_checks = models.PositiveIntegerField(default=0)
    critical_passed = models.PositiveIntegerField(default=0)
    critical_open = models.PositiveIntegerField(default=0)
    high_checks = models.PositiveIntegerField(default=0)
    high_passed = models.PositiveIntegerField(default=0)
    high_open = models.PositiveIntegerField(default=0)
    medium_checks = models.PositiveIntegerField(default=0)
    medium_passed = models.PositiveIntegerField(default=0)
    medium_open = models.PositiveIntegerField(default=0)
    low_checks = models.PositiveIntegerField(default=0)
    low_passed = models.PositiveIntegerField(default=0)
    low_open = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True


class ClusterCompliance(Tallies):
    """The latest evaluation of one cluster: score, counts and the result of each applicable assignment."""

    cluster = models.OneToOneField(Cluster, on_delete=models.CASCADE, primary_key=True, related_name="compliance")
    evaluated_at = models.DateTimeField()
    score = models.FloatField(null=True, blank=True, help_text="Severity-weighted share of passed checks, 0-100")
    passed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    open_violations = models.PositiveIntegerField(default=0)
    results = models.JSONField(default=list, blank=True,
                               help_text="[{assignment, group, rule, severity, mode, violations}]")
    digest = models.CharField(max_length=32, blank=True,
                              help_text="Hash of the open findings: equal means no violation changed")
    inputs = models.CharField(max_length=32, blank=True,
                              help_text="Hash of what the rules read (evaluation.inputs_of): equal, nothing to run")

    objects = GovernanceQuerySet.as_manager()

    class Meta:
        # The overview's clusters with the most open critical violations: the first rows of this index.
        indexes = [models.Index(F("critical_open").desc(), "cluster", name="compliance_critical_open",
                                condition=Q(critical_open__gt=0)),
                   # Worst first (the compliance page and API): a page walks the lowest scores and joins only those
                   # clusters for their names, not a sort of the whole fleet (6.2 ms -> 0.7 ms at 10,000).
                   models.Index(fields=["score"], name="compliance_score")]

    def __str__(self) -> str:
        return f"compliance of {self.cluster_id}: {self.score}"


class UpgradeReadiness(models.Model):
    """The latest readiness of one cluster for its next minor or its groups' target (`governance.upgrades`),
    stored at each evaluation (after every sync and change) and hourly, so the fleet's Upgrade plan is one ordered,
    filtered query. The cluster's own Upgrade tab computes it live."""

    cluster = models.OneToOneField(Cluster, on_delete=models.CASCADE, primary_key=True,
                                   related_name="upgrade_readiness")
    current = models.CharField(max_length=8, blank=True)
    target = models.CharField(max_length=8, blank=True)
    target_from = models.CharField(max_length=80, blank=True)
    target_released = models.BooleanField(default=True)
    steps = models.JSONField(default=list, blank=True)
    end_of_support = models.DateField(null=True, blank=True)
    verdict = models.CharField(max_length=8, db_index=True)
    blockers = models.JSONField(default=list, blank=True, help_text="[{code, subject, message, fix}]")
    warnings = models.JSONField(default=list, blank=True)
    missing = models.JSONField(default=list, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True, help_text="When its facts were last read")
    computed_at = models.DateTimeField(help_text="When it was last stored: only a change is (`upgrades.refresh`)")

    objects = GovernanceQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.verdict}: {self.cluster_id} → {self.target}"


class GroupTally(Tallies):
    """One cluster's results of one group's assignments added up by severity: a group's score and counts are sums
    over its rows (one per member cluster), not aggregates over every result. Written with the results by each
    evaluation; rebuilt from the results for a group whose assignment is removed; goes with its cluster or group."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="group_tallies")
    group = models.ForeignKey(ClusterGroup, on_delete=models.CASCADE, related_name="tallies")
    failing = models.BooleanField(default=False, help_text="Some result of the group's assignments has a violation")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["cluster", "group"], name="group_tally_cluster_group")]
        indexes = [models.Index(fields=["group"])]

    def __str__(self) -> str:
        return f"group {self.group_id} on {self.cluster_id}"


class PolicyResult(models.Model):
    """The latest result of one assignment on one cluster (the rows of `ClusterCompliance.results`).

    Kept as rows so that group and fleet scores are a grouped aggregate in the database: the compliance
    overview of a thousand clusters reads a few dozen rows, not every cluster's results. Written by each
    evaluation (only rows that changed); an assignment or cluster that goes takes its rows with it.
    """

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="policy_results")
    assignment = models.ForeignKey(PolicyAssignment, on_delete=models.CASCADE, related_name="results")
    severity = models.CharField(max_length=16, choices=Severity.choices)
    violations = models.PositiveIntegerField(default=0)
    # A rule applies to a cluster once (`evaluation.effective`): where two groups assign it, each group's assignment
    # gets the one result (so each group's score sees its members), and only the assignment that stands for both is
    # primary: the fleet's counts and /metrics add primary rows only.
    primary = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["cluster", "assignment"],
                                               name="policy_result_cluster_assignment")]
        indexes = [models.Index(fields=["assignment"])]

    def __str__(self) -> str:
        return f"{self.assignment_id} on {self.cluster_id}: {self.violations} violation(s)"


class ComplianceSnapshot(models.Model):
    """A point of a cluster's compliance trend: written when the result changed, else at most every interval."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="compliance_snapshots")
    at = models.DateTimeField()
    score = models.FloatField(null=True, blank=True)
    passed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    open_violations = models.PositiveIntegerField(default=0)
    by_rule = models.JSONField(default=dict, blank=True, help_text="{rule: {severity, passed, violations}}")
    failed_by_severity = models.JSONField(default=dict, blank=True)

    objects = GovernanceQuerySet.as_manager()

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["cluster", "-at"])]

    def __str__(self) -> str:
        return f"{self.cluster_id} at {self.at:%Y-%m-%d %H:%M}: {self.score}"


class GroupComplianceSnapshot(models.Model):
    """A point of a group's (or, with no group, the fleet's) compliance trend, written by beat."""

    group = models.ForeignKey(ClusterGroup, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="compliance_snapshots")
    at = models.DateTimeField()
    score = models.FloatField(null=True, blank=True)
    clusters = models.PositiveIntegerField(default=0)
    failing_clusters = models.PositiveIntegerField(default=0)
    open_violations = models.PositiveIntegerField(default=0)

    objects = GovernanceQuerySet.as_manager()
    visibility = Visibility(group="group_id")

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["group", "-at"])]

    def __str__(self) -> str:
        return f"{self.group_id or 'fleet'} at {self.at:%Y-%m-%d %H:%M}: {self.score}"


class Enforcement(models.Model):
    """Whether an enforce-mode assignment's admission policy is installed in one member cluster."""

    # SET_NULL: an unassigned policy's rows stay, as "to remove", until the cluster confirmed the removal.
    assignment = models.ForeignKey(PolicyAssignment, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="enforcements")
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="enforcements")
    state = models.CharField(max_length=16, choices=EnforcementState.choices, default=EnforcementState.PENDING)
    message = models.TextField(blank=True)
    digest = models.CharField(max_length=64, blank=True, help_text="Digest of the installed policy and binding")
    installed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = GovernanceQuerySet.as_manager()

    class Meta:
        ordering = ["cluster__name", "assignment__rule_key"]
        constraints = [models.UniqueConstraint(fields=["assignment", "cluster"], name="enforcement_identity")]

    def __str__(self) -> str:
        return f"{self.assignment_id} on {self.cluster_id}: {self.state}"


class PolicySet(models.Model):
    """A named baseline: rules of the catalog with their parameters, applied to a group in one step
    (`governance.policysets.apply_set`). Built-in sets ship with Fleetweb and are not edited or deleted."""

    name = models.SlugField(max_length=63, unique=True)
    title = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    items = models.JSONField(default=list, help_text='[{"rule": key, "params": {...}}] in the order shown')
    built_in = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["-built_in", "title"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("governance:policy_set_detail", args=[self.name])

    @property
    def rule_keys(self) -> list[str]:
        return [item["rule"] for item in self.items]
