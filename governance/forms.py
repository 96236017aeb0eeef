"""Forms of governance: the assignment editor, with one field per rule parameter."""

from __future__ import annotations

from django import forms

from governance import rules
from governance.choices import Mode
from inventory.models import ClusterGroup


class AssignmentForm(forms.Form):
    """Group, mode, excluded namespaces and the rule's own parameters (validated by the rule)."""

    group: forms.ModelChoiceField = forms.ModelChoiceField(queryset=ClusterGroup.objects.all(), to_field_name="name")
    mode = forms.ChoiceField(choices=Mode.choices, initial=Mode.AUDIT)
    excluded_namespaces = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}),
        initial="\n".join(rules.DEFAULT_EXCLUDED_NAMESPACES),
        help_text="Namespaces the rule ignores (and its admission policy skips), one per line.")

    def __init__(self, *args, rule: rules.Rule, assignment=None, **kwargs):
        if assignment is not None and "initial" not in kwargs:
            initial = {"group": assignment.group.name, "mode": assignment.mode,
                       "excluded_namespaces": "\n".join(assignment.excluded_namespaces)}
            for p in rule.params:
                value = assignment.params.get(p.name, p.default)
                initial[f"param_{p.name}"] = "\n".join(value) if p.kind == "list" else value
            kwargs["initial"] = initial
        super().__init__(*args, **kwargs)
        self.rule = rule
        for p in rule.params:
            self.fields[f"param_{p.name}"] = p.form_field()
        if assignment is not None:
            self.fields["group"].disabled = True
        if not rule.enforceable:
            self.fields["mode"].choices = [(Mode.AUDIT, Mode.AUDIT.label)]  # type: ignore[attr-defined]
            self.fields["mode"].help_text = f"Audit only: {rule.audit_only_reason}."

    @property
    def param_fields(self) -> list:
        return [self[f"param_{p.name}"] for p in self.rule.params]

    def params(self) -> dict:
        return {p.name: self.cleaned_data.get(f"param_{p.name}") for p in self.rule.params}
