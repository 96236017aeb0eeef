"""'My tokens': create (the key is shown once, on the answer to the POST), list and revoke one's API tokens;
admins see and revoke everyone's and create tokens for service accounts. Changes go through inventory.people.tokens."""

from __future__ import annotations

import secrets

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.db.models import Q
from django.http import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from foundation.errors import ServiceError, add_to_form
from foundation.models import ApiToken
from foundation.roles import ADMIN, has_role
from foundation.web import client_ip
from inventory.people import tokens

USED_FORMS = "fleetweb.token_forms_used"  # in the session: the last forms that created a token


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What will use it, e.g. 'ci-deploy'")
    days = forms.IntegerField(min_value=1, max_value=tokens.MAX_DAYS, initial=90, label="Expires in (days)")
    read_only = forms.BooleanField(required=False, label="Read-only (GET only)")
    owner = forms.ModelChoiceField(queryset=User.objects.filter(service_account__isnull=False), required=False,
                                   empty_label="— me —", label="For", help_text="Admins: a service account")
    # One form, one token: reloading the answer (the browser sends the POST again) must not create a second token.
    once = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args, admin: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not admin:
            self.fields.pop("owner")
        if not self.is_bound:
            self.initial["once"] = secrets.token_hex(16)


@never_cache
@login_required
def my_tokens(request) -> HttpResponseBase:
    admin = has_role(request.user, ADMIN)
    form = TokenForm(request.POST or None, admin=admin)
    key = None
    used = request.session.get(USED_FORMS, [])
    if request.method == "POST" and form.is_valid() and form.cleaned_data["once"] in used:
        form = TokenForm(admin=admin)  # a fresh one, for a new token
        messages.error(request, "This form was sent already and its token created; its key was shown once, on the "
                                "answer to it. Reloading creates nothing: create a new token here if you lost the key.")
    elif request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            _token, key = tokens.create_token(owner=d.get("owner") or request.user, user=request.user,
                                              name=d["name"], days=d["days"], read_only=d["read_only"],
                                              source_ip=client_ip(request))
        except ServiceError as exc:
            add_to_form(form, exc)
        else:
            request.session[USED_FORMS] = [*used, d["once"]][-20:]
            form = TokenForm(admin=admin)
    rows = ApiToken.objects.visible_to(request.user).select_related("user")  # an admin's: everyone's
    if admin and not request.GET.get("all"):  # by default their own and the service accounts'
        rows = rows.filter(Q(user=request.user) | Q(user__service_account__isnull=False))
    return render(request, "fleetweb/my_tokens.html", {"form": form, "key": key, "tokens": rows, "admin": admin,
                                                       "account_form": ServiceAccountForm() if admin else None},
                  status=400 if request.method == "POST" and key is None else 200)


class ServiceAccountForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="e.g. ci-deploy; give it roles in a team or globally")
    description = forms.CharField(required=False, max_length=500)


@login_required
@require_POST
def service_account_create(request) -> HttpResponseBase:
    """Admins: a user without a password, for CI; then create its tokens above and give it roles."""
    form = ServiceAccountForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the service account a username.")
        return redirect("my_tokens")
    try:
        account = tokens.create_service_account(username=form.cleaned_data["username"], user=request.user,
                                                description=form.cleaned_data["description"],
                                                source_ip=client_ip(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Service account {account.username} created: create its token here, and give "
                                  "it roles on a team page or in the admin.")
    return redirect("my_tokens")


@login_required
@require_POST
def revoke(request, pk: int) -> HttpResponseBase:
    token = get_object_or_404(ApiToken.objects.visible_to(request.user), pk=pk)  # another's: 404
    try:
        tokens.revoke_token(token, user=request.user, source_ip=client_ip(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Token '{token.name}' revoked.")
    return redirect("my_tokens")
