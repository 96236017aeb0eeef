"""Applications and their immutable revisions, per-group overrides, plans, rollouts, stages, targets, approvals."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse

from foundation import crypto
from inventory.models import Cluster, ClusterGroup, SelectorMixin, Team
from inventory.querysets import Visibility
from rollouts.choices import Decision, DriftState, RolloutState, StageState, TargetState
from rollouts.querysets import RolloutsQuerySet, through_application


class Application(models.Model):
    """Something to roll out: a name, the namespace it lives in, an owner, and its revisions."""

    name = models.SlugField(max_length=63, unique=True)
    namespace = models.SlugField(max_length=63, help_text="Target namespace, created when missing")
    owner = models.CharField(max_length=128, blank=True)
    owner_team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.PROTECT, related_name="applications",
                                   help_text="The team that deploys it, only to clusters in its scope; none: the "
                                             "platform team (global operators)")
    approver_team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                      help_text="Whose approvers approve its production stages (default: the owner "
                                                "team)")
    description = models.TextField(blank=True)
    approval_ttl = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds an approval of its stages lasts, where shorter than its clusters' "
                                         "environments' (FLEETWEB_APPROVAL_TTL_BY_ENVIRONMENT)")
    correct_drift = models.BooleanField(
        default=False, help_text="Re-apply the deployed revision wherever a drift check finds it changed by hand")
    drift_ignore = models.JSONField(
        default=list, blank=True, help_text="Fields left to others ('[Kind[/name]] path' lines, e.g. "
                                            "'Deployment spec.replicas' for an autoscaler): shown, never drift, and "
                                            "Re-apply keeps their live values (rollouts.drift.parse_ignore)")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    objects = RolloutsQuerySet.as_manager()
    visibility = Visibility(team=("owner_team_id", "approver_team_id"))

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("rollouts:application_detail", args=[self.name])

    @property
    def approving_team_id(self) -> int | None:
        """The team whose approvers approve its production stages; None: global approvers."""
        return self.approver_team_id or self.owner_team_id

    @property
    def latest_revision(self) -> Revision | None:
        return self.revisions.order_by("-number").first()


class Revision(models.Model):
    """One immutable version of an application's manifests: never changed once saved, except its check's verdict,
    filled in once by a worker (`rollouts.dryrun`)."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    manifests = models.TextField(help_text="Multi-document YAML")
    digest = models.CharField(max_length=64, help_text="sha256 of the normalized objects")
    objects_summary = models.JSONField(default=list, help_text="[{kind, name}] in apply order")
    validation = models.JSONField(default=dict, blank=True,
                                  help_text="The check after save: {state: checking|passed|refused_by_some|failed|"
                                            "unchecked, members: [...], policies: [...]}")
    message = models.CharField(max_length=500, blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    source = models.JSONField(
        default=dict, blank=True,
        help_text="What a revision read from a source pins (empty for pasted YAML): {kind, url, ref, commit, path, "
                  "subject, author, date, chart, version, chart_digest, values_digest, tool, tool_version}")
    variants = models.JSONField(
        default=dict, blank=True,
        help_text="A chart rendered again for each group whose override carries Helm values: {group id: {group, "
                  "values_digest, digest, manifests}}; the clusters of that group receive these manifests")

    objects = RolloutsQuerySet.as_manager()
    visibility = through_application()

    class Meta:
        ordering = ["application", "-number"]
        constraints = [models.UniqueConstraint(fields=["application", "number"], name="revision_number")]

    def __str__(self) -> str:
        return f"{self.application.name} r{self.number}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValueError("Revisions are immutable: create a new one instead.")
        super().save(*args, **kwargs)

    @property
    def short_digest(self) -> str:
        return self.digest[:12]

    @property
    def source_link(self) -> str:
        """A link to the pinned commit where the Git host is one whose commit pages are known (GitHub, GitLab,
        Bitbucket, Gitea-style hosts are not guessed); "" otherwise."""
        commit, url = self.source.get("commit", ""), self.source.get("url", "")
        if not commit or not url.startswith("https://"):
            return ""
        base = url.removesuffix(".git").rstrip("/")
        host = base.removeprefix("https://").split("/", 1)[0].lower()
        if host == "github.com":
            return f"{base}/commit/{commit}"
        if host == "gitlab.com":
            return f"{base}/-/commit/{commit}"
        if host == "bitbucket.org":
            return f"{base}/commits/{commit}"
        return ""


class SourceCredential(models.Model):
    """Credentials for reading application sources (a Git token, a registry's user and password), encrypted like a
    cluster's, never shown again. A team's credentials are used only by its own applications' sources; the platform
    team's (no team) only by admins' choice."""

    class Kind(models.TextChoices):
        TOKEN = "token", "Token or password (HTTPS, registries)"
        SSH = "ssh", "SSH deploy key (Git over SSH)"

    name = models.SlugField(max_length=63, unique=True)
    owner_team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                   help_text="Whose applications may use it; none: only admins may pick it")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.TOKEN)
    username = models.CharField(max_length=200, blank=True)
    ciphertext = models.TextField(help_text="The token, password or SSH private key, encrypted")
    public_key = models.TextField(blank=True, help_text="SSH: the deploy key's public half, to add to the repository")
    host_key = models.TextField(blank=True, help_text="SSH: the Git server's host key, pinned (type and base64)")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    objects = RolloutsQuerySet.as_manager()
    visibility = Visibility(team=("owner_team_id",))

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:  # never let secrets reach a log through repr()
        return f"<SourceCredential {self.name}>"

    @staticmethod
    def seal(secret: str) -> str:
        return crypto.encrypt_json({"secret": secret})

    def open(self) -> str:
        return str(crypto.decrypt_json(self.ciphertext).get("secret", ""))


class Source(models.Model):
    """Where an application's revisions come from when not pasted: a Git repository (a branch, tag or commit, and a
    folder of plain manifests, a kustomization or a Helm chart), a Helm chart repository or an OCI registry (a chart
    and a version or range). Checked every `poll_interval` seconds; each new commit or chart version becomes a
    revision (rollouts.sourcing)."""

    class Kind(models.TextChoices):
        GIT = "git", "Git repository"
        HELM = "helm", "Helm chart repository"
        OCI = "oci", "OCI registry"

    application = models.OneToOneField(Application, on_delete=models.CASCADE, related_name="source")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    url = models.CharField(max_length=500, help_text="https://host/org/repo.git, https://charts.example.com or "
                                                     "oci://host/path/chart")
    ref = models.CharField(max_length=255, blank=True, help_text="Git: a branch, a tag or a commit (default: HEAD)")
    path = models.CharField(max_length=500, blank=True, help_text="Git: the folder to render (default: the top)")
    chart = models.CharField(max_length=200, blank=True, help_text="Chart repository: the chart's name")
    version = models.CharField(max_length=100, blank=True, help_text="Charts: a version or a semver range")
    values = models.TextField(blank=True, help_text="Helm values (YAML) for every cluster")
    credential = models.ForeignKey(SourceCredential, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="sources")
    poll_interval = models.PositiveIntegerField(default=300, help_text="Seconds between checks for a new commit or "
                                                                       "chart version")
    plan = models.ForeignKey("RolloutPlan", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                             help_text="Roll out each new revision with this plan at once (it stops at the first "
                                       "approval gate: nothing is approved by itself)")
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    seen = models.CharField(max_length=200, blank=True, help_text="What the last check found: a commit, or a chart "
                                                                  "version and digest (compared first: cheap)")
    error = models.CharField(max_length=500, blank=True, help_text="Why the last check failed, in Fleetweb's words")
    error_kind = models.CharField(max_length=16, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    webhook_id = models.CharField(max_length=32, blank=True, db_index=True,
                                  help_text="The push webhook's address part (/hooks/sources/<id>/); empty: none")
    webhook_ciphertext = models.TextField(blank=True, help_text="The webhook's secret, encrypted")

    objects = RolloutsQuerySet.as_manager()
    visibility = through_application()

    def __str__(self) -> str:
        return f"{self.application.name} <- {self.url}"

    def webhook_secret(self) -> str:
        return str(crypto.decrypt_json(self.webhook_ciphertext).get("secret", "")) if self.webhook_ciphertext else ""


class SourceTest(models.Model):
    """A "Test source" asked for from the source form or the API: what the form held (sealed: values may hold
    secrets), fetched and rendered by a worker without saving anything, and what it found. Kept an hour."""

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="+")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                                     related_name="+")
    credential = models.ForeignKey(SourceCredential, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    ciphertext = models.TextField(help_text="The source's fields as given (sealed)")
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    result = models.JSONField(default=dict, blank=True, help_text="What was found: {seen, commit, subject, chart, "
                                                                  "version, tool, tool_version, objects, groups}")
    error = models.CharField(max_length=500, blank=True)
    error_kind = models.CharField(max_length=16, blank=True)
    requested_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = RolloutsQuerySet.as_manager()
    visibility = through_application()

    def __str__(self) -> str:
        return f"test of a source for {self.application.name}"


class Override(models.Model):
    """A small, validated patch of an application for the clusters of one group: replicas, image tags, labels, and
    for an application read from a Helm chart, values of its own."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="overrides")
    group = models.ForeignKey(ClusterGroup, on_delete=models.CASCADE, related_name="+")
    replicas = models.PositiveIntegerField(null=True, blank=True)
    image_tags = models.JSONField(default=dict, blank=True, help_text="{container name: tag}")
    labels = models.JSONField(default=dict, blank=True, help_text="Added to every object's metadata.labels")
    values = models.TextField(blank=True, help_text="Helm values (YAML) for this group's clusters, a values file after "
                                                    "the application's: rendered into each revision read from a chart")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", help_text="Who wrote what is in effect (may not approve it)")
    updated_at = models.DateTimeField(null=True, blank=True)

    objects = RolloutsQuerySet.as_manager()
    visibility = through_application()

    class Meta:
        ordering = ["application", "group__name"]
        constraints = [models.UniqueConstraint(fields=["application", "group"], name="override_app_group")]

    def __str__(self) -> str:
        return f"{self.application.name} on {self.group.name}"


class RolloutPlan(models.Model):
    """Reusable stages ("canary → eu → global"): [{name, group | selector, approvals, max_parallel, …}]."""

    name = models.SlugField(max_length=63, unique=True)
    description = models.TextField(blank=True)
    stages = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = RolloutsQuerySet.as_manager()
    visibility = Visibility(everyone=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Rollout(models.Model):
    """One revision taken through ordered stages; advanced by idempotent tasks holding a short lease."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="rollouts")
    revision = models.ForeignKey(Revision, on_delete=models.PROTECT, related_name="rollouts")
    plan_name = models.CharField(max_length=63, blank=True)
    state = models.CharField(max_length=16, choices=RolloutState.choices, default=RolloutState.PENDING,
                             db_index=True)
    paused_from = models.CharField(max_length=16, blank=True, help_text="State to resume into")
    message = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True,
                                   help_text="Fence of the engine run holding the lease: every state write names it")
    queued_at = models.DateTimeField(null=True, blank=True, help_text="Queued and not yet picked up (beat waits)")
    next_step_at = models.DateTimeField(null=True, blank=True, db_index=True)

    objects = RolloutsQuerySet.as_manager()
    visibility = through_application()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"rollout #{self.pk} of {self.revision}"

    def get_absolute_url(self) -> str:
        return reverse("rollouts:rollout_detail", args=[self.pk])


class Stage(models.Model):
    """One step of a rollout: which clusters, how many approvals, how fast, how healthy, how long to soak."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="stages")
    index = models.PositiveIntegerField()
    name = models.CharField(max_length=63)
    group = models.ForeignKey(ClusterGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    selector = models.CharField(max_length=1024, blank=True)
    approvals_required = models.PositiveIntegerField(default=0)
    max_parallel = models.PositiveIntegerField(default=1)
    health_deadline = models.PositiveIntegerField(default=300, help_text="Seconds for workloads to become ready")
    soak_time = models.PositiveIntegerField(default=0, help_text="Seconds to watch after ready")
    failures_allowed = models.PositiveIntegerField(default=0)
    min_success_ratio = models.FloatField(null=True, blank=True,
                                          help_text="Share of targets that must succeed (0 < r <= 1); none: any")
    state = models.CharField(max_length=20, choices=StageState.choices, default=StageState.PENDING)
    message = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    awaiting_since = models.DateTimeField(null=True, blank=True, help_text="When it began to await approval")
    approved_digests = models.JSONField(default=dict, blank=True,
                                        help_text="{cluster id: rendered digest} the approvals covered at start")
    soak_until = models.DateTimeField(null=True, blank=True)
    # What holds the stage while a change window is closed or a target is busy ({"windows": [names], "clusters":
    # [names], "busy": [names], "opens_at": ISO or None}); empty when nothing does (`gates.WindowGate`).
    window_hold = models.JSONField(default=dict, blank=True)
    # An admin's emergency override of the stage's change windows ({"by", "reason", "at"}); never of a busy cluster.
    window_override = models.JSONField(default=dict, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = RolloutsQuerySet.as_manager()
    visibility = through_application("rollout__application")

    class Meta:
        ordering = ["rollout", "index"]
        constraints = [models.UniqueConstraint(fields=["rollout", "index"], name="stage_index")]
        # The stages awaiting approval, oldest first: the overview, the approvals page and the header's badge ask for
        # them on every page; without it each asked through every stage of every rollout ever run.
        indexes = [models.Index(fields=["awaiting_since"], condition=models.Q(state=StageState.AWAITING_APPROVAL),
                                name="stage_awaiting")]

    def __str__(self) -> str:
        return f"stage {self.index + 1} ({self.name}) of rollout #{self.rollout_id}"

    @property
    def target_text(self) -> str:
        return f"group {self.group.name}" if self.group is not None else f"selector {self.selector}"


class Target(models.Model):
    """One cluster of a stage: what was applied there, whether it became ready, and what it ran before."""

    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="targets")
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="rollout_targets")
    state = models.CharField(max_length=20, choices=TargetState.choices, default=TargetState.PENDING)
    previous_revision = models.ForeignKey(Revision, null=True, blank=True, on_delete=models.SET_NULL,
                                          related_name="+", help_text="What the cluster ran before (rollback)")
    previous_objects = models.JSONField(
        default=list, blank=True,
        help_text="The objects deployed and verified for previous_revision, frozen when the rollout was created: what "
                  "a rollback re-applies")
    previous_approved = models.BooleanField(default=False, help_text="Whether an approval covered previous_objects")
    applied_revision = models.ForeignKey(Revision, null=True, blank=True, on_delete=models.SET_NULL,
                                         related_name="+")
    attempts = models.PositiveIntegerField(default=0, help_text="Applies started (a retry after a crash counts)")
    rendered = models.JSONField(default=list, blank=True,
                                help_text="The objects this cluster receives (revision + override + labels), frozen "
                                          "when the stage awaits approval or starts")
    rendered_digest = models.CharField(max_length=64, blank=True)
    observed = models.JSONField(default=list, blank=True, help_text="[{kind, name, desired, updated, available}]")
    # When it became ready: the digest of what the cluster holds of the objects applied (`rollouts.receipts`), what
    # differs from them (empty when the digest matches), and when.
    read_back_digest = models.CharField(max_length=64, blank=True)
    read_back_differences = models.JSONField(default=list, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    message = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = RolloutsQuerySet.as_manager()
    visibility = through_application("stage__rollout__application")

    class Meta:
        ordering = ["stage", "cluster__name"]
        constraints = [models.UniqueConstraint(fields=["stage", "cluster"], name="target_stage_cluster")]

    def __str__(self) -> str:
        return f"{self.cluster_id} in {self.stage}"


class Approval(models.Model):
    """A decision on a stage, valid for exactly the rendered objects it names until it expires or they change."""

    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="approvals")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=8, choices=Decision.choices)
    comment = models.TextField(blank=True)
    revision = models.ForeignKey(Revision, on_delete=models.PROTECT, related_name="+")
    digests = models.JSONField(default=dict, blank=True,
                               help_text="{cluster id: rendered digest} this decision covers; void if any changes")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=255, blank=True)
    # What must hold when the stage starts for this approval to count (`approvals.CONDITIONS`): {"in_window": true,
    # "healthy_minutes": 30, "no_critical": true}; one that fails voids it, saying why.
    conditions = models.JSONField(default=dict, blank=True)

    objects = RolloutsQuerySet.as_manager()
    visibility = through_application("stage__rollout__application")

    class Meta:
        ordering = ["stage", "created_at"]

    def __str__(self) -> str:
        return f"{self.decision} of {self.stage} by {self.user_id}"


class Deployed(models.Model):
    """Which revision of an application last became ready on a cluster (what rollback returns to), and the objects
    applied there for it (revision, override and labels as rendered then: what drift checks and Re-apply use)."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="deployments")
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="+")
    revision = models.ForeignKey(Revision, on_delete=models.PROTECT, related_name="+")
    objects_applied = models.JSONField(default=list, blank=True, help_text="The objects applied, as applied")
    approved = models.BooleanField(default=False, help_text="An approval covered these objects (a stage that needed "
                                                            "one): only such objects are re-applied to a prod cluster")
    at = models.DateTimeField()

    objects = RolloutsQuerySet.as_manager()
    visibility = through_application("application")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["application", "cluster"], name="deployed_app_cluster")]

    def __str__(self) -> str:
        return f"{self.revision} on {self.cluster_id}"


class Drift(models.Model):
    """The last drift check of one deployment: per object in sync, drifted (which fields, applied → live, and
    which field managers own them now) or missing."""

    deployed = models.OneToOneField(Deployed, on_delete=models.CASCADE, primary_key=True, related_name="drift")
    revision = models.ForeignKey(Revision, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                 help_text="The revision the last check compared against")
    state = models.CharField(max_length=16, choices=DriftState.choices, default=DriftState.UNCHECKED)
    objects_state = models.JSONField(
        default=list, blank=True,
        help_text='[{kind, name, state, fields: [{path, applied, live, managers}], error}]')
    error = models.TextField(blank=True, help_text="Why the last check could not be made")
    checked_at = models.DateTimeField(null=True, blank=True)
    since = models.DateTimeField(null=True, blank=True, help_text="Drifted or missing since")
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    requests = models.PositiveIntegerField(default=0, help_text="Calls to the cluster the last check made")
    duration_ms = models.PositiveIntegerField(default=0)
    correcting_since = models.DateTimeField(null=True, blank=True, help_text="A re-apply is queued or running")

    objects = RolloutsQuerySet.as_manager()
    visibility = through_application("deployed__application")

    class Meta:
        indexes = [models.Index(fields=["state"])]

    def __str__(self) -> str:
        return f"{self.state}: {self.deployed}"


class ManagedObject(models.Model):
    """An object Fleetweb applied on a member for an application, by the uid the cluster gave it: the record of which
    application owns what (a label in the object is only a mark that anyone with access to the cluster could set)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="+")
    uid = models.CharField(max_length=64)
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="managed_objects")
    kind = models.CharField(max_length=63)
    namespace = models.CharField(max_length=63)
    name = models.CharField(max_length=253)
    applied_at = models.DateTimeField()

    objects = RolloutsQuerySet.as_manager()
    visibility = through_application("application")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["cluster", "uid"], name="managed_object_cluster_uid")]
        indexes = [models.Index(fields=["application", "cluster"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name} on {self.cluster_id}"


class NamespaceHold(models.Model):
    """Who holds a namespace on a member: one team, or the platform (no team). A team's applications deploy only into
    namespaces their team holds, or that did not exist (then the team holds them from the first apply)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=63)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                             help_text="Empty: the platform's")
    at = models.DateTimeField()

    objects = RolloutsQuerySet.as_manager()
    visibility = Visibility(cluster="cluster_id")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="namespace_hold_cluster_name")]

    def __str__(self) -> str:
        return f"{self.name} on {self.cluster_id}"


class ChangeWindow(SelectorMixin, models.Model):
    """When Fleetweb may change clusters (`rollouts.windows`): an allow window ("only then") or a deny window (a
    freeze, "never then"), recurring (weekdays and local hours) or one-off, in a time zone, for the clusters of its
    groups or selector (every cluster when it names neither) in its environments (all when none). A team's window
    holds only clusters in that team's scope; a platform window (no team) is the admins'."""

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=8, choices=[("allow", "allow window"), ("deny", "freeze (deny window)")])
    reason = models.CharField(max_length=500)
    zone = models.CharField(max_length=64, default="UTC", help_text="IANA time zone, e.g. Europe/Berlin")
    weekdays = models.JSONField(default=list, blank=True, help_text="Recurring: 0 (Monday) to 6 (Sunday)")
    start_time = models.TimeField(null=True, blank=True, help_text="Recurring: local start")
    end_time = models.TimeField(null=True, blank=True, help_text="Recurring: local end (not after start: next day)")
    starts_at = models.DateTimeField(null=True, blank=True, help_text="One-off: start")
    ends_at = models.DateTimeField(null=True, blank=True, help_text="One-off: end")
    groups = models.ManyToManyField(ClusterGroup, blank=True, related_name="change_windows")
    selector = models.CharField(max_length=1024, blank=True)
    environments = models.JSONField(default=list, blank=True)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="change_windows",
                             help_text="Whose window it is (none: the platform's)")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["name", "pk"]
        constraints = [models.UniqueConstraint(fields=["name"], name="change_window_name")]

    def __str__(self) -> str:
        return self.name
