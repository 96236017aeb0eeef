"""Pages for registered clusters: 'Register a cluster' (a bootstrap token, its manifest and its one `kubectl apply`
line, shown once on the answer to the POST), the registrations waiting for a decision with Accept and Reject, and
revoking an agent. Global admins only; every change goes through agents.services."""

from __future__ import annotations

import secrets

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from agents import manifests, services
from agents.models import BootstrapToken, Registration, RegistrationState
from foundation.errors import ServiceError, add_to_form
from foundation.web import client_ip
from inventory.choices import Environment
from inventory.models import Cluster
from inventory.people.access import can

USED_FORMS = "fleetweb.register_forms_used"


class RegisterForm(forms.Form):
    name = forms.SlugField(max_length=63, help_text="The cluster's name in Fleetweb once accepted")
    environment = forms.ChoiceField(choices=Environment.choices, initial=Environment.DEV)
    minutes = forms.IntegerField(min_value=1, max_value=7 * 24 * 60, initial=60, label="Token expires in (minutes)")
    once = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial["once"] = secrets.token_hex(16)


def _admin(request) -> None:
    if not can(request.user, "register_cluster"):
        raise PermissionDenied(services.ADMIN_ONLY)


@never_cache
@login_required
def register(request) -> HttpResponseBase:
    """The form; its answer shows the manifest and the apply line once (the token is never shown again)."""
    _admin(request)
    form = RegisterForm(request.POST or None)
    shown = None
    used = request.session.get(USED_FORMS, [])
    if request.method == "POST" and form.is_valid() and form.cleaned_data["once"] in used:
        form = RegisterForm()
        messages.error(request, "This form was sent already and its token created; it was shown once, on the answer "
                                "to it. Revoke it below and create a new one if you lost it.")
    elif request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            token, secret = services.create_bootstrap_token(user=request.user, name=d["name"],
                                                            environment=d["environment"], ttl=d["minutes"] * 60,
                                                            source_ip=client_ip(request))
        except ServiceError as exc:
            add_to_form(form, exc)
        else:
            request.session[USED_FORMS] = [*used, d["once"]][-20:]
            hub = manifests.hub_url(request)
            shown = {"token": token, "command": manifests.apply_command(hub_url=hub, bootstrap_token=secret),
                     "manifest": manifests.agent_manifest(hub_url=hub, bootstrap_token=secret)}
            form = RegisterForm()
    return render(request, "agents/register.html", {"form": form, "shown": shown},
                  status=400 if request.method == "POST" and shown is None else 200)


@login_required
def registrations(request) -> HttpResponseBase:
    _admin(request)
    now = timezone.now()
    return render(request, "agents/registrations.html", {
        "pending": Registration.objects.filter(state=RegistrationState.PENDING).select_related("token__created_by"),
        "decided": Registration.objects.exclude(state=RegistrationState.PENDING)
        .select_related("decided_by", "cluster")[:50],
        "tokens": BootstrapToken.objects.filter(used_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now)
        .select_related("created_by"),
    })


@login_required
@require_POST
def decide(request, registration_id) -> HttpResponseBase:
    registration = get_object_or_404(Registration, pk=registration_id)
    accept = request.POST.get("decision") == "accept"
    try:
        services.decide(registration, accept=accept, user=request.user, source_ip=client_ip(request))
    except ServiceError as exc:
        if exc.status == 403:
            raise PermissionDenied(exc.message) from None
        messages.error(request, exc.message)
    else:
        done = "accepted: it syncs through its agent" if accept else "rejected"
        messages.success(request, f"{registration.name} {done}.")
    return redirect("agents:registrations")


@login_required
@require_POST
def revoke_token(request, token_id: int) -> HttpResponseBase:
    token = get_object_or_404(BootstrapToken, pk=token_id)
    try:
        services.revoke_bootstrap_token(token, user=request.user, source_ip=client_ip(request))
    except ServiceError as exc:
        if exc.status == 403:
            raise PermissionDenied(exc.message) from None
        messages.error(request, exc.message)
    else:
        messages.success(request, f"The bootstrap token for {token.name} was revoked.")
    return redirect("agents:registrations")


@login_required
@require_POST
def revoke_agent(request, name: str) -> HttpResponseBase:
    cluster = get_object_or_404(Cluster.objects.visible_to(request.user), name=name)
    try:
        services.revoke(cluster, user=request.user, source_ip=client_ip(request))
    except ServiceError as exc:
        if exc.status == 403:
            raise PermissionDenied(exc.message) from None
        messages.error(request, exc.message)
    else:
        messages.success(request, f"The agent of {cluster.name} is cut off at its next request.")
    return redirect(cluster.get_absolute_url())
