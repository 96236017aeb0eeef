"""API serializers of governance: the catalog, assignments, violations, compliance, the audit log."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from foundation.models import AuditEvent
from governance import rules, upgrades
from governance.choices import Mode
from governance.compliance import history
from governance.models import ClusterCompliance, Enforcement, PolicyAssignment, Violation
from inventory.models import ClusterGroup
from inventory.people.access import cluster_scope


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ("id", "at", "actor", "actor_name", "source_ip", "action", "target_type", "target_id", "target_name",
                  "before", "after", "message")
        read_only_fields = fields


class ParamSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    default = serializers.JSONField()
    help = serializers.CharField()
    required = serializers.BooleanField()  # type: ignore[assignment]  # a field, moved off the class by DRF
    min_value = serializers.IntegerField(allow_null=True)
    max_value = serializers.IntegerField(allow_null=True)


class RuleSerializer(serializers.Serializer):
    """A rule of the built-in catalog."""

    key = serializers.CharField()
    title = serializers.CharField()
    why = serializers.CharField()
    severity = serializers.CharField()
    scope = serializers.CharField()
    fix = serializers.CharField()
    params = ParamSerializer(many=True)
    enforceable = serializers.BooleanField()
    audit_only_reason = serializers.CharField()


class EnforcementSerializer(serializers.ModelSerializer):
    cluster: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Enforcement
        fields = ("cluster", "state", "message", "installed_at", "updated_at")
        read_only_fields = fields


class PolicyAssignmentSerializer(serializers.ModelSerializer):
    """A rule bound to a group: `group` by name, `rule` by key; params are validated by the rule."""

    group: serializers.SlugRelatedField = (
        serializers.SlugRelatedField(slug_field="name", queryset=ClusterGroup.objects.all()))
    rule = serializers.ChoiceField(source="rule_key", choices=[r.key for r in rules.catalog()])
    mode = serializers.ChoiceField(choices=Mode.choices, default=Mode.AUDIT)
    params = serializers.JSONField(required=False, default=dict)
    excluded_namespaces = serializers.ListField(child=serializers.CharField(), required=False,
                                                default=lambda: list(rules.DEFAULT_EXCLUDED_NAMESPACES))
    severity = serializers.CharField(read_only=True)
    policy_name = serializers.CharField(read_only=True)
    enforcement = serializers.SerializerMethodField(help_text="Per cluster the reader may see: the installed policy")

    class Meta:
        model = PolicyAssignment
        fields = ("id", "group", "rule", "severity", "mode", "params", "excluded_namespaces", "policy_name",
                  "enforcement", "created_at", "updated_at")
        read_only_fields = ("id", "severity", "policy_name", "enforcement", "created_at", "updated_at")
        validators: list = []  # group+rule uniqueness is checked by the service, with a message that names both

    @extend_schema_field(EnforcementSerializer(many=True))
    def get_enforcement(self, assignment) -> list:
        """Only the clusters the reader may see: a team member is told nothing of the others."""
        request = self.context.get("request")
        scope = cluster_scope(request.user) if request is not None else None
        rows = [e for e in assignment.enforcements.all() if scope is None or e.cluster_id in scope]
        return list(EnforcementSerializer(rows, many=True).data)


class ViolationSerializer(serializers.ModelSerializer):
    cluster: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="name", read_only=True)
    group = serializers.CharField(source="assignment.group.name", read_only=True)
    rule = serializers.CharField(source="rule_key", read_only=True)
    state = serializers.SerializerMethodField()
    last_seen = serializers.DateTimeField(source="seen_until", read_only=True)

    class Meta:
        model = Violation
        fields = ("id", "cluster", "group", "rule", "severity", "object_kind", "namespace", "object_name", "message",
                  "state", "first_seen", "last_seen", "resolved_at", "reopened_at", "times_reopened")
        read_only_fields = fields

    def get_state(self, v) -> str:
        return "open" if v.resolved_at is None else "resolved"


class ClusterComplianceSerializer(serializers.ModelSerializer):
    cluster: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="name", read_only=True)
    history = serializers.SerializerMethodField()

    class Meta:
        model = ClusterCompliance
        fields = ("cluster", "score", "passed", "failed", "open_violations", "evaluated_at", "results", "history")
        read_only_fields = fields

    def get_history(self, c) -> list[dict] | None:
        if not self.context.get("with_history"):
            return None
        return history(c.cluster.compliance_snapshots.all(), days=self.context.get("days", 30))


class UpgradeItemSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="api, crd, pool, addon, support, steps, facts or version")
    subject = serializers.CharField(help_text="What it is about: the API, CRD, node pool, add-on …")
    message = serializers.CharField()
    fix = serializers.CharField(help_text="How to fix it")


class UpgradeReadinessSerializer(serializers.Serializer):
    """One cluster's readiness for its next minor or its groups' target (`governance.upgrades`)."""

    cluster = serializers.CharField()
    cluster_id = serializers.IntegerField()
    environment = serializers.CharField()
    kubernetes_version = serializers.CharField()
    current = serializers.CharField(help_text="The minor it runs, e.g. 1.35")
    target = serializers.CharField(help_text="The minor it is checked against")
    target_from = serializers.CharField(help_text="'next minor' or 'group <name>'")
    target_released = serializers.BooleanField()
    steps = serializers.ListField(child=serializers.CharField(), help_text="Minors the control plane passes")
    end_of_support = serializers.DateField(allow_null=True)
    days_left = serializers.IntegerField(allow_null=True)
    verdict = serializers.ChoiceField(choices=list(upgrades.VERDICTS))
    blockers = UpgradeItemSerializer(many=True)
    warnings = UpgradeItemSerializer(many=True)
    missing = UpgradeItemSerializer(many=True, help_text="What could not be checked (verdict unknown)")
    checked_at = serializers.DateTimeField(allow_null=True, help_text="Last read of deprecated APIs and CRDs")
