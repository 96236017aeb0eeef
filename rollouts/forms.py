"""Forms of rollouts: applications, revisions, rollouts and plans (stages as YAML), decisions."""

from __future__ import annotations

import yaml
from django import forms

from foundation.roles import OPERATOR
from inventory.forms import SecretTextarea
from inventory.models import ClusterGroup, Team
from inventory.people.access import access_of
from inventory.validators import validate_dns_label
from rollouts import drift
from rollouts.models import Revision, RolloutPlan, SourceCredential
from rollouts.services import STAGE_DEFAULTS, STAGE_LIMITS

STAGES_HELP = ("One item per stage: name; group (a group's name) or selector; approvals_required (0-3; a stage "
               "reaching a prod cluster always needs 1); max_parallel; health_deadline and soak_time (seconds); "
               "failures_allowed; min_success_ratio (the share of its clusters that must succeed, e.g. 0.9).")


def parse_stages(text: str) -> list:
    try:
        value = yaml.safe_load(text or "")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise forms.ValidationError(f"The stages are not valid YAML{where}.") from None
    if not isinstance(value, list):
        raise forms.ValidationError("The stages must be a YAML list, one item per stage.")
    return value


class TeamFieldsMixin(forms.Form):
    """Owner team (the teams the user operates; any team, or none, for a global operator) and approver team
    (global operators only: the service refuses it from anyone else too)."""

    def _owner_team_field(self, user) -> bool:
        """Offer the teams `user` operates as owners (any team, or none, for a global operator); whether the user is
        a global operator."""
        access = access_of(user) if user is not None else None
        platform = access is None or OPERATOR in access.global_roles
        owner = self.fields["owner_team"]
        owner.queryset = (Team.objects.all() if platform or access is None  # type: ignore[attr-defined]
                          else Team.objects.filter(pk__in=access.teams_with(OPERATOR)))
        owner.required = not platform
        owner.empty_label = (  # type: ignore[attr-defined]  # a ModelChoiceField
            "— the platform team (global operators) —" if platform else None)
        return platform

    def _team_fields(self, user, *, instance=None) -> None:
        platform = self._owner_team_field(user)
        if not platform:  # the service refuses it too ("choose_approvers")
            self.fields.pop("approver_team")
        if instance is not None and not platform:
            self.fields.pop("owner_team")


class ApplicationForm(TeamFieldsMixin):
    name = forms.CharField(max_length=63, validators=[validate_dns_label])
    namespace = forms.CharField(max_length=63, validators=[validate_dns_label],
                                help_text="Where the objects go in every cluster; created when missing.")
    owner_team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False, label="Team",
                                        help_text="Its operators deploy it, only to the team's clusters.")
    approver_team = forms.ModelChoiceField(queryset=Team.objects.all(), required=False,
                                           empty_label="— the owner team —",
                                           help_text="Whose approvers approve its production stages.")
    owner = forms.CharField(max_length=128, required=False, label="Contact")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    manifests = forms.CharField(widget=forms.Textarea(attrs={"rows": 18, "spellcheck": "false"}),
                                help_text="Multi-document YAML: Deployments, StatefulSets, DaemonSets, Services, "
                                          "ConfigMaps, Jobs, CronJobs, Ingresses, … (no Secrets, nothing "
                                          "cluster-scoped).")
    message = forms.CharField(max_length=500, required=False, label="Revision message")

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._team_fields(user)


class RevisionForm(forms.Form):
    manifests = forms.CharField(widget=forms.Textarea(attrs={"rows": 22, "spellcheck": "false"}))
    message = forms.CharField(max_length=500, required=False, help_text="What changed and why")


class RolloutForm(forms.Form):
    revision: forms.ModelChoiceField = forms.ModelChoiceField(queryset=Revision.objects.none(), empty_label=None)
    plan: forms.ModelChoiceField = forms.ModelChoiceField(queryset=RolloutPlan.objects.all(), required=False,
                                  empty_label="— inline stages below —")
    stages = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false"}),
                             help_text=STAGES_HELP, label="Stages as YAML")
    source = forms.ChoiceField(choices=[("builder", "the stage builder"), ("plan", "a saved plan"),
                                        ("yaml", "the YAML below")], initial="builder", label="Stages from",
                               widget=forms.RadioSelect)
    save_as_plan = forms.CharField(required=False, max_length=63, validators=[validate_dns_label],
                                   label="Also save the builder's stages as a plan named",
                                   help_text="Leave empty to use them once.")

    def __init__(self, *args, application, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["revision"].queryset = application.revisions.order_by("-number")
        self.fields["revision"].label_from_instance = lambda r: f"r{r.number} · {r.short_digest} · {r.message}"

    def clean_stages(self) -> list | None:
        text = self.cleaned_data["stages"]
        return parse_stages(text) if text.strip() else None

    def clean(self) -> dict:
        data: dict = super().clean() or {}
        source = data.get("source") or "builder"
        if source == "plan" and not data.get("plan"):
            self.add_error("plan", "Pick a plan, or take the stages from the builder.")
        if source == "yaml" and not data.get("stages"):
            self.add_error("stages", "Write the stages, or take them from the builder.")
        return data


class PlanForm(forms.Form):
    name = forms.CharField(max_length=63, validators=[validate_dns_label])
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    stages = forms.CharField(widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false"}), help_text=STAGES_HELP)

    def __init__(self, *args, renaming: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if not renaming:  # an existing plan: its name is shown, never taken from the request
            self.fields["name"].disabled = True
            self.fields["name"].help_text = "A plan keeps its name: rollouts record the plan they came from by it."

    def clean_stages(self) -> list | None:
        return parse_stages(self.cleaned_data["stages"])


class DecisionForm(forms.Form):
    comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)
    stage_digest = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)
    # Approve only: what must hold when the stage starts (`approvals.CONDITIONS`).
    in_window = forms.BooleanField(required=False)
    healthy_minutes = forms.IntegerField(required=False, min_value=0)
    no_critical = forms.BooleanField(required=False)

    def conditions(self) -> dict:
        d = self.cleaned_data
        return {"in_window": d.get("in_window", False), "no_critical": d.get("no_critical", False),
                "healthy_minutes": d.get("healthy_minutes") or 0}


class ApplicationEditForm(TeamFieldsMixin):
    owner_team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False, label="Team")
    approver_team = forms.ModelChoiceField(queryset=Team.objects.all(), required=False,
                                           empty_label="— the owner team —")
    owner = forms.CharField(max_length=128, required=False, label="Contact")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    correct_drift = forms.BooleanField(
        required=False, label="Correct drift automatically",
        help_text="When a drift check finds a field changed by hand or an object deleted, re-apply the deployed "
                  "revision at once (audited), instead of only reporting it.")
    approval_ttl = forms.IntegerField(
        required=False, min_value=60, max_value=31 * 86400, label="Approvals last at most (seconds)",
        help_text="Shorter than its clusters' environments allow, where you want approvals to go stale sooner; "
                  "empty: as the environments say.")
    drift_ignore = forms.CharField(
        required=False, label="Fields drift leaves to others", widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One per line, '[Kind[/name]] path', e.g. 'Deployment spec.replicas' where an autoscaler sets "
                  "the replicas. Their changes are shown but are not drift, and Re-apply keeps their live values.")

    def __init__(self, *args, user=None, instance=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._team_fields(user, instance=instance)

    def clean_drift_ignore(self) -> list[str]:
        try:
            return drift.normalized_ignore(self.cleaned_data["drift_ignore"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


class ApplicationDeleteForm(forms.Form):
    confirm_name = forms.CharField(max_length=63, label="Type the application's name to confirm")


def _pairs(text: str, what: str) -> dict[str, str]:
    """'a=b' lines (or comma-separated) into a dict; a line without '=' is an error naming it."""
    pairs: dict[str, str] = {}
    for raw in text.replace(",", "\n").splitlines():
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise forms.ValidationError(f"'{line}' is not {what} (write one per line).")
        pairs[key.strip()] = value.strip()
    return pairs


class OverrideForm(forms.Form):
    """The per-group patch of an application; all empty removes it."""

    group: forms.ModelChoiceField = forms.ModelChoiceField(queryset=ClusterGroup.objects.none(), to_field_name="name",
                                                           empty_label=None)
    replicas = forms.IntegerField(required=False, min_value=0, max_value=1000)
    image_tags = forms.CharField(required=False, label="Image tags", widget=forms.Textarea(attrs={"rows": 2}),
                                 help_text="container=tag, one per line (e.g. web=4.2.1)")
    labels = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="key=value, one per line; added to every object")
    values = forms.CharField(required=False, label="Helm values", widget=forms.Textarea(attrs={"rows": 5,
                                                                                              "class": "mono"}),
                             help_text="YAML, a values file after the application's, for this group's clusters. "
                                       "Applications read from a chart only; rendered into the next revision, "
                                       "which Fleetweb makes at once.")

    def __init__(self, *args, user=None, sourced: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        groups = ClusterGroup.objects.all() if user is None else ClusterGroup.objects.visible_to(user)
        self.fields["group"].queryset = groups.order_by("name")  # type: ignore[attr-defined]  # per request
        if not sourced:  # pasted YAML: nothing renders values
            del self.fields["values"]

    def clean_image_tags(self) -> dict[str, str]:
        return _pairs(self.cleaned_data["image_tags"], "container=tag")

    def clean_labels(self) -> dict[str, str]:
        return _pairs(self.cleaned_data["labels"], "key=value")


class SourceForm(forms.Form):
    """Where an application's revisions come from (the service validates every field again)."""

    kind = forms.ChoiceField(choices=[("git", "Git repository"), ("helm", "Helm chart repository"),
                                      ("oci", "OCI registry")])
    url = forms.CharField(max_length=500, label="URL", widget=forms.TextInput(attrs={
        "placeholder": "https://git.example.com/team/deploy.git · git@git.example.com:team/deploy.git · "
                       "https://charts.example.com · oci://host/charts/web"}),
        help_text="Git over SSH needs SSH credentials (a deploy key)")
    ref = forms.CharField(max_length=255, required=False, label="Branch, tag or commit",
                          help_text="Git: default HEAD")
    path = forms.CharField(max_length=500, required=False, help_text="Git: the folder with plain manifests, a "
                                                                      "kustomization or a Chart.yaml")
    chart = forms.CharField(max_length=200, required=False, help_text="Chart repository: the chart's name")
    version = forms.CharField(max_length=100, required=False, help_text="Charts: 4.2.1, ^4.2, ~4.2.0, >=1 <2")
    values = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4, "class": "mono"}),
                             help_text="Helm values (YAML) for every cluster")
    credential: forms.ModelChoiceField = forms.ModelChoiceField(
        queryset=SourceCredential.objects.none(), to_field_name="name", required=False,
        empty_label="— none (public) —")
    poll_interval = forms.IntegerField(min_value=30, max_value=86400, initial=300, label="Check every (seconds)")
    plan: forms.ModelChoiceField = forms.ModelChoiceField(
        queryset=RolloutPlan.objects.all(), to_field_name="name", required=False,
        empty_label="— none: roll out by hand —", label="Roll out each new revision with",
        help_text="The plan starts by itself and stops at its first approval gate; nothing is approved by itself")

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        found = SourceCredential.objects.all() if user is None else SourceCredential.objects.visible_to(user)
        self.fields["credential"].queryset = found.order_by("name")  # type: ignore[attr-defined]  # per request


class StageForm(forms.Form):
    """One stage of the stage builder; the numbers carry the limits the service checks."""

    name = forms.CharField(max_length=63)
    group: forms.ModelChoiceField = forms.ModelChoiceField(queryset=ClusterGroup.objects.none(), to_field_name="name",
                                                           required=False, empty_label="— or a selector —")
    selector = forms.CharField(max_length=1024, required=False,
                               widget=forms.TextInput(attrs={"placeholder": "environment=prod,region in (eu-west-1)"}))

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        groups = ClusterGroup.objects.all() if user is None else ClusterGroup.objects.visible_to(user)
        self.fields["group"].queryset = groups.order_by("name")  # type: ignore[attr-defined]
        for field, (low, high) in STAGE_LIMITS.items():
            self.fields[field] = forms.IntegerField(min_value=low, max_value=high, initial=STAGE_DEFAULTS[field],
                                                    label=field.replace("_", " "),
                                                    help_text=f"{low}–{high}")
        self.fields["min_success_ratio"] = forms.IntegerField(
            min_value=1, max_value=100, required=False, label="must succeed (%)",
            help_text="Share of its clusters that must succeed; empty: only the failures allowed count")

    def spec(self) -> dict:
        d = self.cleaned_data
        ratio = d.get("min_success_ratio")
        return {"name": d["name"], "group": d["group"].name if d.get("group") else "",
                "selector": d.get("selector", ""), **{f: d[f] for f in STAGE_LIMITS},
                **({"min_success_ratio": ratio / 100} if ratio else {})}


StageFormSet = forms.formset_factory(StageForm, extra=0, can_delete=True, can_order=True, min_num=1,
                                     validate_min=True, max_num=20, validate_max=True)


def stage_initial(stages: list[dict]) -> list[dict]:
    """Builder rows for stage specs (a plan's, or the defaults)."""
    return [{"name": s.get("name", ""), "group": s.get("group") or None, "selector": s.get("selector", ""),
             **{f: s.get(f, STAGE_DEFAULTS[f]) for f in STAGE_LIMITS}, "ORDER": i + 1,
             "min_success_ratio": round(s["min_success_ratio"] * 100) if s.get("min_success_ratio") else None}
            for i, s in enumerate(stages)]


def builder_stages(formset) -> list[dict]:
    """The specs in the order the user gave, the removed ones left out."""
    kept = [f for f in formset.ordered_forms if not f.cleaned_data.get("DELETE")] if formset.can_order else []
    return [f.spec() for f in kept]


class CredentialForm(TeamFieldsMixin):
    """Store source credentials (the service validates every field again): a token, or an SSH deploy key generated
    here or given, with the Git server's host key."""

    name = forms.CharField(max_length=63, validators=[validate_dns_label])
    owner_team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False, label="Team",
                                        help_text="Whose applications may use it")
    kind = forms.ChoiceField(choices=SourceCredential.Kind.choices, initial=SourceCredential.Kind.SSH)
    username = forms.CharField(max_length=200, required=False, help_text="Token: the user name, when the host wants "
                                                                        "one")
    secret = forms.CharField(required=False, max_length=16384, strip=False, label="Token or private key",
                             widget=SecretTextarea(attrs={"rows": 3, "class": "mono", "autocomplete": "off"}),
                             help_text="Stored encrypted and never shown again. SSH: leave empty to have Fleetweb "
                                       "generate the key")
    host_key = forms.CharField(required=False, max_length=16384, label="Git server's host key",
                               widget=forms.TextInput(attrs={"class": "mono",
                                                             "placeholder": "github.com ssh-ed25519 AAAA…"}),
                               help_text="SSH: as `ssh-keyscan HOST` prints it; Fleetweb refuses a server "
                                         "presenting another key")

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._owner_team_field(user)
