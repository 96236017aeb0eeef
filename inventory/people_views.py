"""People pages: admins list, create (invite), change and deactivate accounts, give global and team roles and
issue set-password links; and the public page where a person sets their password from such a link. Every
change goes through inventory.people.accounts (accounts) and inventory.people.services (team roles)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.contrib.auth.views import INTERNAL_RESET_SESSION_TOKEN
from django.core.paginator import Paginator
from django.db.models import Prefetch, Q
from django.http import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from foundation.decorators import role_required
from foundation.errors import ServiceError, add_to_form
from foundation.roles import ADMIN, ROLES
from foundation.web import client_ip
from inventory.choices import TeamRole
from inventory.models import Team, TeamMember
from inventory.people import accounts
from inventory.people import services as team_services

ROLE_HELP = {"viewer": "reads the whole fleet", "operator": "attaches, syncs and changes the whole fleet",
             "approver": "approves production stages anywhere", "admin": "everything, people and teams included"}
PAGE = 50


class AccountForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="What they sign in with; cannot change later.")
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)
    email = forms.EmailField(required=False, help_text="The set-password link is mailed here when mail is set up.")
    roles = forms.MultipleChoiceField(choices=[(r, f"{r}: {ROLE_HELP[r]}") for r in ROLES], required=False,
                                      widget=forms.CheckboxSelectMultiple, label="Global roles",
                                      help_text="None: they see only what their teams give them.")


class TeamRoleForm(forms.Form):
    team = forms.ModelChoiceField(queryset=Team.objects.order_by("name"), empty_label="— team —")
    role = forms.ChoiceField(choices=TeamRole.choices)


class SetPasswordForm(forms.Form):
    password = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}), strip=False,
                               label="New password", help_text="At least 12 characters, not a common one.")
    again = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}), strip=False,
                            label="The same again")

    def clean(self) -> dict:
        data = super().clean() or {}
        if data.get("password") and data.get("again") and data["password"] != data["again"]:
            self.add_error("again", "The two passwords differ.")
        return data


def _base_url(request) -> str:
    return request.build_absolute_uri("/").rstrip("/")


@never_cache
@role_required(ADMIN)
def people_list(request) -> HttpResponseBase:
    q = request.GET.get("q", "").strip()[:150]
    state = request.GET.get("state", "active")
    people = User.objects.order_by("username").prefetch_related(
        "groups", Prefetch("team_roles", queryset=TeamMember.objects.select_related("team")))
    people = people.select_related("service_account", "sso_identity")
    if q:
        people = people.filter(Q(username__icontains=q) | Q(email__icontains=q) | Q(first_name__icontains=q)
                               | Q(last_name__icontains=q))
    if state in ("active", "deactivated"):
        people = people.filter(is_active=state == "active")
    page = Paginator(people, PAGE).get_page(request.GET.get("page"))
    rows = [{"account": u, "kind": accounts.kind_of(u), "roles": accounts.roles_held(u),
             "teams": sorted({f"{g.team.name} ({g.role})" for g in u.team_roles.all()})} for u in page]
    return render(request, "inventory/people_list.html", {"rows": rows, "page": page, "q": q, "state": state,
                                                         "kinds": accounts.KINDS})


@never_cache
@role_required(ADMIN)
def person_create(request) -> HttpResponseBase:
    form = AccountForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            account, link = accounts.create_account(user=request.user, username=d["username"], email=d["email"],
                                                    first_name=d["first_name"], last_name=d["last_name"],
                                                    roles=d["roles"], base_url=_base_url(request),
                                                    source_ip=client_ip(request))
        except ServiceError as exc:
            add_to_form(form, exc)
        else:
            messages.success(request, f"Account {account.username} created. Give them a team role below, or a "
                                      "global role, before they sign in.")
            return _person(request, account, link=link, status=201)
    return render(request, "inventory/person_form.html", {"form": form},
                  status=400 if request.method == "POST" else 200)


def _person(request, account: User, *, form: AccountForm | None = None, link=None, status: int = 200):
    if form is None:
        form = AccountForm(initial={"username": account.username, "first_name": account.first_name,
                                    "last_name": account.last_name, "email": account.email,
                                    "roles": accounts.roles_held(account)})
    form.fields["username"].disabled = True
    kind = accounts.kind_of(account)
    if kind == accounts.SSO:
        form.fields["roles"].disabled = True
        form.fields["roles"].help_text = ("Set at each sign-in by the identity provider's groups (Teams, Sign-on "
                                          "mapping).")
    grants = account.team_roles.select_related("team").order_by("team__name", "role")
    return render(request, "inventory/person_detail.html", {
        "account": account, "form": form, "kind": kind, "kind_label": accounts.KINDS[kind], "grants": grants,
        "team_form": TeamRoleForm(), "link": link, "self": account.pk == request.user.pk,
        "can_change": not account.is_superuser or request.user.is_superuser}, status=status)


@never_cache
@role_required(ADMIN)
def person_detail(request, username: str) -> HttpResponseBase:
    account = get_object_or_404(User.objects.select_related("service_account", "sso_identity"), username=username)
    if request.method != "POST":
        return _person(request, account)
    form = AccountForm(request.POST, initial={"username": account.username})
    form.fields["username"].disabled = True
    if accounts.kind_of(account) == accounts.SSO:
        form.fields["roles"].disabled = True
        form.initial["roles"] = accounts.roles_held(account)
    if form.is_valid():
        d = form.cleaned_data
        try:
            accounts.update_account(account, user=request.user, email=d["email"], first_name=d["first_name"],
                                    last_name=d["last_name"], roles=d["roles"], source_ip=client_ip(request))
        except ServiceError as exc:
            add_to_form(form, exc)
        else:
            messages.success(request, f"{account.username} saved.")
            return redirect("person_detail", account.username)
    return _person(request, account, form=form, status=400)


@role_required(ADMIN)
@require_POST
def person_active(request, username: str) -> HttpResponseBase:
    """Deactivate (signed out everywhere: sessions and API tokens stop at their next request) or reactivate."""
    account = get_object_or_404(User, username=username)
    active = request.POST.get("active") == "1"
    try:
        accounts.update_account(account, user=request.user, is_active=active, source_ip=client_ip(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{username} {'reactivated' if active else 'deactivated: signed out everywhere'}.")
    return redirect("person_detail", username)


@never_cache
@role_required(ADMIN)
@require_POST
def person_password_link(request, username: str) -> HttpResponseBase:
    account = get_object_or_404(User.objects.select_related("service_account", "sso_identity"), username=username)
    try:
        link = accounts.issue_password_link(account, user=request.user, base_url=_base_url(request),
                                            source_ip=client_ip(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("person_detail", username)
    messages.success(request, f"{username}'s password is taken away; the new link is below.")
    return _person(request, account, link=link)


@role_required(ADMIN)
@require_POST
def person_team_add(request, username: str) -> HttpResponseBase:
    account = get_object_or_404(User, username=username)
    form = TeamRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a team and a role.")
    else:
        try:
            team_services.add_member(form.cleaned_data["team"], member=account, role=form.cleaned_data["role"],
                                     user=request.user, source_ip=client_ip(request))
        except ServiceError as exc:
            messages.error(request, exc.message)
    return redirect("person_detail", username)


@role_required(ADMIN)
@require_POST
def person_team_remove(request, username: str, pk: int) -> HttpResponseBase:
    grant = get_object_or_404(TeamMember.objects.select_related("team", "user"), user__username=username, pk=pk)
    try:
        team_services.remove_member(grant, user=request.user, source_ip=client_ip(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("person_detail", username)


SESSION_LINK = INTERNAL_RESET_SESSION_TOKEN  # Django's own key: the token leaves the URL before the form shows


@never_cache
def set_password(request, uidb64: str, token: str) -> HttpResponseBase:
    """Public: the link's token is moved into the session and the address bar loses it (so it reaches no
    Referer and no later log line), then the person chooses a password."""
    if token != "set":
        request.session[SESSION_LINK] = token
        return redirect("set_password", uidb64, "set")
    token = request.session.get(SESSION_LINK, "")
    try:
        account = accounts.account_for_link(uidb64, token)
    except ServiceError as exc:
        return render(request, "registration/set_password.html", {"problem": exc.message}, status=404)
    form = SetPasswordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            accounts.set_password_from_link(uidb64, token, password=form.cleaned_data["password"],
                                            source_ip=client_ip(request))
        except ServiceError as exc:
            if exc.status == 404:
                return render(request, "registration/set_password.html", {"problem": exc.message}, status=404)
            add_to_form(form, exc)
        else:
            request.session.pop(SESSION_LINK, None)
            messages.success(request, "Your password is set: sign in with it.")
            return redirect(reverse("login"))
    return render(request, "registration/set_password.html", {"form": form, "account": account},
                  status=400 if request.method == "POST" else 200)
