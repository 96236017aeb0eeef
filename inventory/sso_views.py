"""Sign-in through the identity provider, and the admins' page of the role mapping (claim value -> role)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.http import Http404, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from foundation.auth import sign_in_options
from foundation.decorators import role_required
from foundation.errors import ServiceError, add_to_form
from foundation.roles import ADMIN, ROLES
from foundation.web import client_ip
from inventory.models import RoleMapping, Team
from inventory.people import services as team_services
from inventory.people import sso

SSO_SESSION_FLAG = "fleetweb_sso_at"


def _redirect_uri(request) -> str:
    return request.build_absolute_uri(reverse("inventory:sso_callback"))


@never_cache
def sso_login(request) -> HttpResponseBase:
    if not sso.enabled():
        raise Http404("Single sign-on is not configured.")
    next_url = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        next_url = reverse("overview")
    try:
        return redirect(sso.begin(request, redirect_uri=_redirect_uri(request), next_url=next_url))
    except sso.SsoError as exc:
        return render(request, "registration/login.html", _login_context(request, sso_error=str(exc)), status=502)


@never_cache
def sso_callback(request) -> HttpResponseBase:
    if not sso.enabled():
        raise Http404("Single sign-on is not configured.")
    try:
        user, next_url = sso.finish(request, redirect_uri=_redirect_uri(request))
    except sso.SsoError as exc:
        return render(request, "registration/login.html", _login_context(request, sso_error=str(exc)), status=403)
    login(request, user, backend="foundation.auth.PasswordBackend")
    # The session ends after the max age: the provider is asked again, and someone disabled there is out.
    request.session.set_expiry(settings.FLEETWEB_OIDC_SESSION_MAX_AGE)
    request.session[SSO_SESSION_FLAG] = True
    return redirect(next_url or "overview")


def _login_context(request, **extra) -> dict:
    from django.contrib.auth.forms import AuthenticationForm

    return {"form": AuthenticationForm(request), "next": request.GET.get("next", ""), **sign_in_options(), **extra}


class MappingForm(forms.Form):
    claim_value = forms.CharField(max_length=255, label="Group (claim value)",
                                  help_text="As the identity provider sends it in the groups claim")
    team = forms.ModelChoiceField(queryset=Team.objects.order_by("name"), required=False,
                                  empty_label="— global role —")
    role = forms.ChoiceField(choices=[(r, r) for r in ROLES])


@role_required(ADMIN)
def mapping_list(request) -> HttpResponseBase:
    form = MappingForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            team_services.add_mapping(claim_value=d["claim_value"], team=d["team"], role=d["role"],
                                      user=request.user, source_ip=client_ip(request))
        except ServiceError as exc:
            add_to_form(form, exc)
        else:
            messages.success(request, f"'{d['claim_value']}' mapped.")
            return redirect("inventory:sso_mappings")
    mappings = RoleMapping.objects.select_related("team")
    return render(request, "inventory/sso_mappings.html", {
        "form": form, "mappings": mappings, "enabled": sso.enabled(),
        "claim": settings.FLEETWEB_OIDC_GROUPS_CLAIM}, status=400 if request.method == "POST" else 200)


@role_required(ADMIN)
@require_POST
def mapping_delete(request, pk: int) -> HttpResponseBase:
    team_services.delete_mapping(get_object_or_404(RoleMapping, pk=pk), user=request.user,
                                 source_ip=client_ip(request))
    messages.success(request, "Mapping removed; people lose the role at their next sign-in.")
    return redirect("inventory:sso_mappings")
