"""API serializers of rollouts."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import serializers

from inventory.api.serializers import VisibleRelatedField, VisibleSlugField
from inventory.models import Cluster, ClusterGroup, Team
from inventory.validators import validate_dns_label
from rollouts import calendar, dryrun
from rollouts.choices import DriftState
from rollouts.models import (
    Application,
    Approval,
    ChangeWindow,
    Drift,
    NamespaceHold,
    Override,
    Revision,
    Rollout,
    RolloutPlan,
    Source,
    SourceCredential,
    SourceTest,
    Stage,
    Target,
)
from rollouts.rendering import digest_of


class RevisionSerializer(serializers.ModelSerializer):
    author: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="username", read_only=True)
    validation = serializers.SerializerMethodField(
        help_text="The check after save (a worker): state checking | passed | refused_by_some | failed | unchecked; "
                  "members (each member's dry run), policies (what Fleetweb's rules find, `enforced`: that cluster "
                  "will refuse it), refused_on (clusters); clusters the caller cannot see are only counted")

    variants = serializers.SerializerMethodField(
        help_text="A chart rendered again for each group whose override carries Helm values: [{group, values_digest, "
                  "digest, manifests}]; that group's clusters receive these manifests instead")

    def get_variants(self, revision: Revision) -> list[dict]:
        return [{"group": v["group"], "values_digest": v["values_digest"], "digest": v.get("digest", ""),
                 "manifests": v["manifests"]} for _key, v in sorted((revision.variants or {}).items(),
                                                                    key=lambda pair: pair[1]["group"])]

    def get_validation(self, revision: Revision) -> dict:
        request = self.context.get("request")
        if request is None:
            raise RuntimeError("RevisionSerializer needs the request in its context (who may read which cluster)")
        return dryrun.for_user(revision.validation, request.user)

    class Meta:
        model = Revision
        fields = ("id", "number", "digest", "message", "author", "created_at", "objects_summary", "manifests",
                  "validation", "source", "variants")
        read_only_fields = ("id", "number", "digest", "author", "created_at", "objects_summary", "validation",
                            "source", "variants")
        extra_kwargs = {"source": {"help_text": "What a revision read from the application's source pins: kind, "
                                                "url, ref, commit, path, subject, author, date, chart, version, "
                                                "chart_digest, values_digest, tool, tool_version (empty: pasted)"}}


class SourceTestSerializer(serializers.ModelSerializer):
    class Meta:
        model = SourceTest
        fields = ("id", "state", "result", "error", "error_kind", "requested_at", "finished_at")
        read_only_fields = fields


class SourceSerializer(serializers.ModelSerializer):
    credential: serializers.SlugRelatedField = VisibleSlugField(
        slug_field="name", queryset=SourceCredential.objects.all(), required=False, allow_null=True,
        help_text="The name of stored source credentials (of the application's team, or the platform's)")
    plan: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="name", queryset=RolloutPlan.objects.all(), required=False, allow_null=True,
        help_text="Roll out each new revision with this plan at once (it stops at its first approval gate)")

    class Meta:
        model = Source
        fields = ("kind", "url", "ref", "path", "chart", "version", "values", "credential", "poll_interval", "plan",
                  "checked_at", "next_check_at", "seen", "error", "error_kind")
        read_only_fields = ("checked_at", "next_check_at", "seen", "error", "error_kind")


class SourceCredentialSerializer(serializers.ModelSerializer):
    owner_team: serializers.SlugRelatedField = VisibleSlugField(
        slug_field="name", queryset=Team.objects.all(), required=False, allow_null=True)
    secret = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=16384,
                                   trim_whitespace=False, style={"input_type": "password"},
                                   help_text="The token or password, or (kind ssh) the deploy key's private key: "
                                             "stored encrypted, never returned")
    generate = serializers.BooleanField(write_only=True, required=False, default=False,
                                        help_text="kind ssh: Fleetweb generates the deploy key (Ed25519); add the "
                                                  "returned public_key to the repository")
    host_key = serializers.CharField(required=False, allow_blank=True, max_length=16384,
                                     help_text="kind ssh: the Git server's host key as `ssh-keyscan HOST` prints it "
                                               "(pinned; a server presenting another is refused)")

    class Meta:
        model = SourceCredential
        fields = ("id", "name", "owner_team", "kind", "username", "secret", "generate", "host_key", "public_key",
                  "created_at")
        read_only_fields = ("id", "public_key", "created_at")


class PlacementWorkloadSerializer(serializers.Serializer):
    kind = serializers.CharField()
    name = serializers.CharField()
    desired = serializers.IntegerField(allow_null=True, help_text="As the rollout verified it")
    available = serializers.IntegerField(allow_null=True, help_text="As the rollout verified it")
    in_inventory = serializers.BooleanField()
    available_now = serializers.BooleanField(allow_null=True, help_text="By the inventory's last sync")
    replicas_now = serializers.CharField(help_text="available/desired by the inventory's last sync")
    restarts = serializers.IntegerField(allow_null=True)
    crashlooping = serializers.IntegerField(allow_null=True)


class PlacementSerializer(serializers.Serializer):
    cluster = serializers.CharField()
    environment = serializers.CharField()
    revision = serializers.IntegerField()
    since = serializers.DateTimeField()
    rollout = serializers.IntegerField(allow_null=True)
    healthy = serializers.BooleanField(help_text="Every workload available now, and nothing drifted or missing")
    drift = serializers.ChoiceField(choices=DriftState.choices, help_text="By the last drift check")
    workloads = PlacementWorkloadSerializer(many=True)


class OverrideSerializer(serializers.ModelSerializer):
    group: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Override
        fields = ("group", "replicas", "image_tags", "labels", "values")
        read_only_fields = fields


class ApplicationSerializer(serializers.ModelSerializer):
    """Create with `manifests` (multi-document YAML): that becomes revision 1."""

    owner_team: serializers.SlugRelatedField = VisibleSlugField(
        slug_field="name", queryset=Team.objects.all(), required=False, allow_null=True,
        help_text="Team that deploys it (to its clusters only); null: the platform team. A team operator must name "
                  "a team they operate; changing it later is for global operators.")
    approver_team: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="name", queryset=Team.objects.all(), required=False, allow_null=True,
        help_text="Whose approvers approve its production stages (default: the owner team; set by global operators)")
    manifests = serializers.CharField(write_only=True, style={"base_template": "textarea.html"})
    message = serializers.CharField(write_only=True, required=False, allow_blank=True)
    latest_revision = RevisionSerializer(read_only=True)
    overrides = OverrideSerializer(many=True, read_only=True)
    drift_ignore = serializers.ListField(
        child=serializers.CharField(max_length=400, trim_whitespace=True), required=False, max_length=200,
        help_text="Fields drift leaves to others, '[Kind[/name]] path' each (e.g. 'Deployment spec.replicas'): "
                  "shown, never drift, and Re-apply keeps their live values")

    class Meta:
        model = Application
        fields = ("id", "name", "namespace", "owner", "owner_team", "approver_team", "description", "correct_drift",
                  "drift_ignore", "approval_ttl", "created_at", "latest_revision", "overrides",
                  "manifests", "message")
        read_only_fields = ("id", "created_at", "latest_revision", "overrides")
        extra_kwargs: dict[str, dict] = {"name": {"validators": [validate_dns_label]},
                                         "namespace": {"validators": [validate_dns_label]}}


class ApprovalSerializer(serializers.ModelSerializer):
    user: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="username", read_only=True)
    revision = serializers.IntegerField(source="revision.number", read_only=True)

    class Meta:
        model = Approval
        fields = ("user", "decision", "comment", "revision", "digests", "conditions", "created_at", "expires_at",
                  "voided_at", "void_reason")
        read_only_fields = fields


class TargetSerializer(serializers.ModelSerializer):
    cluster: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="name", read_only=True)
    applied_revision = serializers.IntegerField(source="applied_revision.number", read_only=True, default=None)
    previous_revision = serializers.IntegerField(source="previous_revision.number", read_only=True, default=None)

    class Meta:
        model = Target
        fields = ("cluster", "state", "applied_revision", "previous_revision", "rendered_digest", "attempts",
                  "observed", "message", "started_at", "deadline", "finished_at")
        read_only_fields = fields


class StageSerializer(serializers.ModelSerializer):
    group: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="name", read_only=True)
    targets = TargetSerializer(many=True, read_only=True)
    approvals = ApprovalSerializer(many=True, read_only=True)
    digest = serializers.SerializerMethodField(help_text="Digest over every target's rendered objects: what an "
                                                         "approval covers (send it back as `stage_digest`)")

    class Meta:
        model = Stage
        fields = ("id", "index", "name", "group", "selector", "approvals_required", "max_parallel", "health_deadline",
                  "soak_time", "failures_allowed", "state", "message", "started_at", "approved_at", "soak_until",
                  "finished_at", "digest", "window_hold", "window_override", "min_success_ratio", "targets",
                  "approvals")
        read_only_fields = fields


    def get_digest(self, stage) -> str:
        return digest_of({str(t.cluster_id): t.rendered_digest for t in stage.targets.all()})


class RolloutSerializer(serializers.ModelSerializer):
    """Create from `revision` (id) and a `plan` (name) or inline `stages`."""

    application: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="name", read_only=True)
    revision: serializers.PrimaryKeyRelatedField = VisibleRelatedField(queryset=Revision.objects.all())
    revision_number = serializers.IntegerField(source="revision.number", read_only=True)
    requested_by: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="username", read_only=True)
    plan: serializers.SlugRelatedField = (
        serializers.SlugRelatedField(slug_field="name", queryset=RolloutPlan.objects.all(), write_only=True,
                                     required=False))
    stages = serializers.JSONField(write_only=True, required=False,
                                   help_text="[{name, group | selector, approvals_required, max_parallel, "
                                             "health_deadline, soak_time, failures_allowed}]")
    stage_list = StageSerializer(source="stages", many=True, read_only=True)

    class Meta:
        model = Rollout
        fields = ("id", "application", "revision", "revision_number", "plan_name", "state", "message",
                  "requested_by", "created_at", "started_at", "finished_at", "plan", "stages", "stage_list")
        read_only_fields = ("id", "application", "revision_number", "plan_name", "state", "message", "requested_by",
                            "created_at", "started_at", "finished_at", "stage_list")


class RolloutPlanSerializer(serializers.ModelSerializer):
    class Meta:
        model = RolloutPlan
        fields = ("id", "name", "description", "stages", "created_at")
        read_only_fields = ("id", "created_at")
        extra_kwargs: dict[str, dict] = {"name": {"validators": [validate_dns_label]}}


class DecisionSerializer(serializers.Serializer):
    stage = serializers.IntegerField(required=False, help_text="Stage index; default: the one awaiting approval")
    comment = serializers.CharField(required=False, allow_blank=True, default="")
    stage_digest = serializers.CharField(required=False, allow_blank=True, default="", max_length=64,
                                         help_text="The stage's `digest` you reviewed: refused (409) when what the "
                                                   "stage would apply changed since")
    conditions = serializers.JSONField(required=False, default=dict,
                                       help_text="Approve only: what must hold when the stage starts, "
                                                 '{"in_window": true, "healthy_minutes": 30, "no_critical": true}; '
                                                 "one that fails voids the approval")


class DriftSerializer(serializers.ModelSerializer):
    """The last drift check of an application on one cluster (`id` is the deployment's)."""

    id = serializers.IntegerField(source="deployed_id", read_only=True)
    application = serializers.CharField(source="deployed.application.name", read_only=True)
    cluster = serializers.CharField(source="deployed.cluster.name", read_only=True)
    revision = serializers.IntegerField(source="deployed.revision.number", read_only=True)
    objects = serializers.JSONField(source="objects_state", read_only=True,
                                    help_text="Per object: kind, name, state, fields [{path, applied, live, "
                                              "managers [{manager, operation, time}]}], ignored (the same, for "
                                              "fields the application leaves to others), error")
    correcting = serializers.SerializerMethodField(help_text="A re-apply is queued or running")

    class Meta:
        model = Drift
        fields = ("id", "application", "cluster", "revision", "state", "objects", "error", "checked_at", "since",
                  "requests", "duration_ms", "correcting")
        read_only_fields = fields

    def get_correcting(self, drift) -> bool:
        return drift.correcting_since is not None


class NamespaceHoldSerializer(serializers.ModelSerializer):
    """Who holds a namespace on a member: a team, or the platform (`team` null). Admins set it (`POST`, which
    replaces the holder); only that owner's applications deploy into it."""

    cluster: serializers.SlugRelatedField = VisibleSlugField(slug_field="name", queryset=Cluster.objects.all())
    team: serializers.SlugRelatedField = VisibleSlugField(slug_field="name", queryset=Team.objects.all(),
                                                          allow_null=True, required=False)

    class Meta:
        model = NamespaceHold
        fields = ("id", "cluster", "name", "team", "at")
        read_only_fields = ("id", "at")
        validators: list = []  # one hold per (cluster, name): POST replaces the holder


class ChangeWindowSerializer(serializers.ModelSerializer):
    """A change window or freeze. Recurring: `weekdays` (0 = Monday), `start_time`, `end_time` (local, in `zone`; an
    end not after the start ends the next day); one-off: `starts_at`, `ends_at` (with offsets). `groups` by name;
    `team` by name (none: a platform window, admins only)."""

    groups: serializers.SlugRelatedField = VisibleSlugField(
        slug_field="name", many=True, required=False, queryset=ClusterGroup.objects.all())
    team: serializers.SlugRelatedField = VisibleSlugField(
        slug_field="name", required=False, allow_null=True, queryset=Team.objects.all())
    schedule = serializers.SerializerMethodField()
    open_now = serializers.SerializerMethodField()

    class Meta:
        model = ChangeWindow
        fields = ("id", "name", "kind", "reason", "zone", "weekdays", "start_time", "end_time", "starts_at", "ends_at",
                  "groups", "selector", "environments", "team", "enabled", "schedule", "open_now", "created_at",
                  "updated_at")
        read_only_fields = ("id", "schedule", "open_now", "created_at", "updated_at")
        extra_kwargs: dict[str, dict] = {"name": {"validators": []}}

    def get_schedule(self, window) -> str:
        return calendar.schedule_of(window).describe()

    def get_open_now(self, window) -> bool:
        return calendar.schedule_of(window).is_open(timezone.now())

    def to_representation(self, instance) -> dict:
        data = super().to_representation(instance)
        request = self.context.get("request")
        if request is not None:  # a platform window's groups the reader cannot see are not named
            data["groups"] = calendar.shown_groups(instance, request.user)
        return data


class WindowOverrideSerializer(serializers.Serializer):
    stage = serializers.IntegerField(min_value=0, help_text="The stage's index")
    reason = serializers.CharField(max_length=500)
