"""Forms of the onboarding wizard and the cluster editor."""

from __future__ import annotations

import re

from django import forms
from django.core.validators import validate_slug

from foundation.errors import add_to_form
from inventory import credentials, kubeconfigs, services
from inventory.choices import Environment
from inventory.models import Cluster, ClusterGroup
from inventory.validators import (
    format_labels,
    normalize_server_url,
    parse_labels,
    validate_minor_version,
    validate_selector,
    validate_server_url,
)


class ClusterMetadataForm(forms.Form):
    """What a cluster is: name, environment, region, owner, cost center, labels, sync interval."""

    name = forms.CharField(max_length=63, validators=[validate_slug], required=False,
                           help_text="Lowercase letters, digits and dashes; unique. Defaults to the context name.")
    environment = forms.ChoiceField(choices=Environment.choices, initial=Environment.DEV)
    region = forms.CharField(max_length=64, required=False)
    owner = forms.CharField(max_length=128, required=False, label="Owner team")
    cost_center = forms.CharField(max_length=64, required=False)
    labels = forms.CharField(required=False,
                             widget=forms.Textarea(attrs={"rows": 3, "placeholder": "tier=web\nteam=shop"}),
                             help_text="key=value, one per line or comma-separated")
    sync_interval = forms.IntegerField(min_value=15, max_value=86400, initial=60, label="Sync interval (seconds)")
    insecure_skip_tls_verify = forms.BooleanField(required=False,
                                                  label="Skip TLS verification (admins only; never prod)")
    attach_anyway = forms.BooleanField(required=False, label="Attach anyway",
                                       help_text="Without a passed connection test, or when its API server is "
                                                 "already attached and you mean a second entry for it.")

    def clean_labels(self) -> dict[str, str]:
        return parse_labels(self.cleaned_data.get("labels", ""))

    def clean_name(self) -> str:
        name = (self.cleaned_data.get("name") or "").lower()
        taken = services.cluster_name_taken(name) if name else ""
        if taken:
            raise forms.ValidationError(taken)
        return name


class ClusterEditForm(ClusterMetadataForm):
    """Editing an attached cluster: the name stays."""

    def __init__(self, *args, cluster: Cluster, **kwargs):
        super().__init__(*args, **kwargs)
        self.cluster = cluster
        del self.fields["name"]
        del self.fields["attach_anyway"]
        if not self.is_bound:
            for field in ("environment", "region", "owner", "cost_center", "sync_interval", "insecure_skip_tls_verify"):
                self.fields[field].initial = getattr(cluster, field)
            self.fields["labels"].initial = format_labels(cluster.labels)


class SecretTextarea(forms.Textarea):
    """A textarea that never renders its value back into the page (kubeconfigs, private keys)."""

    def format_value(self, value) -> None:
        return None


class TokenCredentialsForm(forms.Form):
    """API server URL + CA bundle + bearer token or client certificate.

    The token and key are never rendered back: after a rejected submit the wizard holds them in an encrypted draft
    (`held`), used when the fields come back empty."""

    server = forms.CharField(max_length=512, label="API server URL", validators=[validate_server_url],
                             widget=forms.TextInput(attrs={"placeholder": "https://api.cluster.example.com:6443"}))
    ca_data = forms.CharField(required=False, label="CA bundle (PEM)", widget=forms.Textarea(attrs={"rows": 4}),
                              help_text="Leave empty only for API servers with a publicly trusted certificate.")
    token = forms.CharField(required=False, label="Bearer token", strip=True,
                            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}))
    client_cert = forms.CharField(required=False, label="Client certificate (PEM)",
                                  widget=forms.Textarea(attrs={"rows": 3}))
    client_key = forms.CharField(required=False, label="Client key (PEM)",
                                 widget=SecretTextarea(attrs={"rows": 3, "autocomplete": "off"}))

    def __init__(self, *args, held: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.held = held

    def clean_server(self) -> str:
        return normalize_server_url(self.cleaned_data["server"])

    def clean(self) -> dict:
        data: dict = super().clean() or {}
        if "server" not in data:
            return data  # the URL's own error is on its field already
        token, cert, key = data.get("token"), data.get("client_cert", "").strip(), data.get("client_key", "").strip()
        held = self.held or {}
        if held and not token and not key:
            if held.get("method") == "token" and not cert:
                token = held["token"]
            elif held.get("method") == "client_cert":
                key, cert = held["client_key"], cert or held["client_cert"]
        try:
            self._credentials = credentials.direct(server=data["server"], ca_data=data.get("ca_data", ""),
                                                   token=token or "", client_cert=cert, client_key=key)
        except credentials.CredentialsError as exc:
            add_to_form(self, exc)
        return data

    def source(self) -> dict:
        """What an attach draft holds for this form."""
        return {"credentials": self.credentials()}

    def credentials(self) -> dict:
        return self._credentials


class KubeconfigForm(forms.Form):
    """A pasted or uploaded kubeconfig and the contexts to attach. The kubeconfig is never rendered back: after a
    rejected submit the wizard holds it parsed in an encrypted draft (`held`), used when none is given again."""

    kubeconfig = forms.CharField(required=False, widget=SecretTextarea(attrs={"rows": 8, "spellcheck": "false"}),
                                 help_text="Paste `kubectl config view --minify --flatten`, or upload the file.")
    kubeconfig_file = forms.FileField(required=False, label="…or upload a kubeconfig file")
    # Checked in clean() against the contexts the kubeconfig really has (choices are unknown until it is parsed).
    contexts = forms.Field(required=False, widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args, held: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.held = held

    def source(self) -> dict:
        return {"kubeconfig": self.parsed}

    def clean(self) -> dict:
        data: dict = super().clean() or {}
        upload = data.get("kubeconfig_file")
        if upload is not None:
            if upload.size > kubeconfigs.MAX_KUBECONFIG_BYTES:
                raise forms.ValidationError(f"The uploaded file is {upload.size // 1024} KiB; the limit is "
                                            f"{kubeconfigs.MAX_KUBECONFIG_BYTES // 1024} KiB.")
            raw: str | bytes = upload.read()
        else:
            raw = data.get("kubeconfig", "")
        if raw:
            try:
                parsed = kubeconfigs.parse_kubeconfig(raw)
            except kubeconfigs.KubeconfigError as exc:
                raise forms.ValidationError(str(exc)) from None
        elif self.held and "kubeconfig" in self.held:
            parsed = self.held["kubeconfig"]
        else:
            raise forms.ValidationError("Paste a kubeconfig or upload one.")
        self.parsed = parsed
        chosen = self.data.getlist("contexts") if hasattr(self.data, "getlist") else self.data.get("contexts", [])
        unknown = [c for c in chosen if c not in kubeconfigs.context_names(parsed)]
        if unknown:
            raise forms.ValidationError(f"Context '{unknown[0]}' is not in this kubeconfig.")
        data["contexts"] = list(chosen)
        return data

    def selected(self) -> list[tuple[str, dict]]:
        """(context, credentials) of each chosen context; KubeconfigError names the first bad one."""
        result = []
        for context in self.cleaned_data["contexts"]:
            single = kubeconfigs.extract_context(self.parsed, context)
            result.append((context, kubeconfigs.credentials_from_kubeconfig(single)))
        return result


class ClusterGroupForm(forms.Form):
    """A group: name, description, owner, selector and static members (cluster names, one per line)."""

    name = forms.CharField(max_length=63, validators=[validate_slug],
                           help_text="Lowercase letters, digits and dashes; unique. Cannot change later.")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    owner = forms.CharField(max_length=128, required=False, label="Owner team")
    selector = forms.CharField(
        max_length=1024, required=False, validators=[validate_selector],
        widget=forms.TextInput(attrs={"size": 70, "autocomplete": "off", "spellcheck": "false",
                                      "placeholder": "environment=prod,region in (eu-west,eu-north),tier!=edge"}),
        help_text="Kubernetes label-selector syntax. Keys name, environment, region, provider, owner and "
                  "cost_center match the cluster's fields; any other key matches its labels. Empty: static "
                  "members only; every cluster: name")
    static_members = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3, "placeholder": "one cluster name per line"}),
        help_text="Clusters that belong to the group whatever the selector says.")
    upgrade_target = forms.CharField(
        max_length=8, required=False, label="Upgrade target", validators=[validate_minor_version],
        widget=forms.TextInput(attrs={"size": 6, "placeholder": "1.37"}),
        help_text="The Kubernetes minor its clusters plan to reach (the Upgrade plan checks them against it). "
                  "Empty: each cluster's next minor.")

    def __init__(self, *args, group: ClusterGroup | None = None, **kwargs):
        if group is not None and "initial" not in kwargs:
            kwargs["initial"] = {"name": group.name, "description": group.description, "owner": group.owner,
                                 "selector": group.selector, "upgrade_target": group.upgrade_target,
                                 "static_members": "\n".join(sorted(c.name for c in group.static_members.all()))}
        super().__init__(*args, **kwargs)
        self.group = group
        if group is not None:
            self.fields["name"].disabled = True

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        taken = services.group_name_taken(name) if self.group is None else ""
        if taken:
            raise forms.ValidationError(taken)
        return name

    def clean_static_members(self) -> list[Cluster]:
        names = [n for n in (part.strip() for part in re.split(r"[,\s]+", self.cleaned_data["static_members"])) if n]
        clusters = list(Cluster.objects.filter(name__in=names))
        missing = sorted(set(names) - {c.name for c in clusters})
        if missing:
            raise forms.ValidationError(f"No cluster named: {', '.join(missing)}.")
        return clusters
