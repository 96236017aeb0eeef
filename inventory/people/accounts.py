"""People's accounts: platform admins create and invite them, change their names, global roles and whether they
may sign in, and issue set-password links; a person sets their own password from such a link. The People pages,
`/api/v1/users/` and the commands all come here (team roles are `services.add_member`/`remove_member`).

An admin never chooses or sees a password: a new account has none until its owner opens the one-time link
(shown once to the admin, and mailed when mail is configured), and a reset takes the old password away at once.
The audit events are the user and role receivers' (`governance.signals`, which also cover `/admin/` and the
shell), named for the caller here by `foundation.web.acting`, in the same transaction as the change.
"""

from __future__ import annotations

import dataclasses
import smtplib
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode

from foundation.errors import ServiceError
from foundation.roles import ADMIN, ROLES, has_role
from foundation.web import acting
from inventory.people.access import forget, require

LOCAL, SSO, SERVICE = "local", "sso", "service"
KINDS = {LOCAL: "password", SSO: "single sign-on", SERVICE: "service account"}
BAD_LINK = ("This link is not valid: it was used already, replaced by a newer one, or it expired. Ask an admin for "
            "a new one.")


@dataclasses.dataclass(frozen=True)
class PasswordLink:
    """A one-time set-password link, as shown once to the admin who asked for it."""

    url: str
    expires_at: datetime
    mailed_to: str = ""  # the address it was mailed to; "" when not mailed
    mail_problem: str = ""  # why mailing it failed, in our words


def _check(user) -> None:
    require(user, "manage_people", message="People's accounts are managed by platform admins.")


def kind_of(account: User) -> str:
    if hasattr(account, "service_account"):
        return SERVICE
    if hasattr(account, "sso_identity"):
        return SSO
    return LOCAL


def roles_held(account: User) -> list[str]:
    """The global roles given to the account (not the ones they imply), in ROLES order."""
    names = {g.name for g in account.groups.all()}
    return [r for r in ROLES if r in names]


def account_view(account: User) -> dict:
    return {"username": account.get_username(), "first_name": account.first_name, "last_name": account.last_name,
            "email": account.email, "is_active": account.is_active, "roles": roles_held(account),
            "kind": kind_of(account)}


def _clean_roles(roles: Iterable[str]) -> list[str]:
    roles = list(dict.fromkeys(roles))
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ServiceError({"roles": f"Unknown role {unknown[0]!r}: one or more of {', '.join(ROLES)}."})
    return [r for r in ROLES if r in roles]


def _clean_profile(*, email: str, first_name: str, last_name: str) -> dict:
    email, first_name, last_name = (email or "").strip(), (first_name or "").strip(), (last_name or "").strip()
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise ServiceError({"email": "Not an email address."}) from None
        if len(email) > 254:
            raise ServiceError({"email": "At most 254 characters."})
    for field, value in (("first_name", first_name), ("last_name", last_name)):
        if len(value) > 150:
            raise ServiceError({field: "At most 150 characters."})
    return {"email": email, "first_name": first_name, "last_name": last_name}


def _other_admins(account: User) -> int:
    return (User.objects.filter(is_active=True).exclude(pk=account.pk)
            .filter(Q(is_superuser=True) | Q(groups__name=ADMIN)).distinct().count())


def set_global_roles(account: User, roles: list[str]) -> None:
    """Give `account` exactly these global roles (the callers check who may): each grant and removal is recorded by
    the role receivers (governance.signals)."""
    held = set(roles_held(account))
    for role in roles:
        if role not in held:
            account.groups.add(Group.objects.get_or_create(name=role)[0])  # recorded: user.role_grant
    for group in Group.objects.filter(name__in=held - set(roles)):
        account.groups.remove(group)  # recorded: user.role_revoke
    forget(account)
    account._fleetweb_roles = None  # type: ignore[attr-defined]  # roles_of's per-request cache


def create_account(*, user, username: str, email: str = "", first_name: str = "", last_name: str = "",
                   roles: Iterable[str] = (), base_url: str = "", source_ip: str = "") -> tuple[User, PasswordLink]:
    """A new account with no password and the link its owner sets one with (mailed when mail is configured)."""
    _check(user)
    username = (username or "").strip()
    try:
        User._meta.get_field("username").run_validators(username)
    except ValidationError as exc:
        raise ServiceError({"username": " ".join(exc.messages)}) from None
    if not username:
        raise ServiceError({"username": "A username is needed."})
    profile = _clean_profile(email=email, first_name=first_name, last_name=last_name)
    roles = _clean_roles(roles)
    with transaction.atomic(), acting(user, source_ip):
        if User.objects.select_for_update().filter(username__iexact=username).exists():
            raise ServiceError({"username": f"An account named '{username}' exists already."}, status=409)
        account = User(username=username, **profile)
        account.set_unusable_password()
        try:
            with transaction.atomic():
                account.save()  # recorded: user.create
        except IntegrityError:
            raise ServiceError({"username": f"An account named '{username}' exists already."}, status=409) from None
        set_global_roles(account, roles)
    return account, _link(account, base_url=base_url, invited=True)


def update_account(account: User, *, user, email: str | None = None, first_name: str | None = None,
                   last_name: str | None = None, roles: Iterable[str] | None = None, is_active: bool | None = None,
                   source_ip: str = "") -> User:
    """Change what is given (None leaves a field as it is). Refused: a superuser's account unless by a superuser;
    one's own deactivation or admin role; the last active admin; the global roles of a single-sign-on account
    (the provider's groups set them at each sign-in)."""
    _check(user)
    if account.is_superuser and not getattr(user, "is_superuser", False):
        raise ServiceError("Only a superuser changes a superuser's account.", status=403)
    profile = _clean_profile(email=account.email if email is None else email,
                             first_name=account.first_name if first_name is None else first_name,
                             last_name=account.last_name if last_name is None else last_name)
    new_roles = roles_held(account) if roles is None else _clean_roles(roles)
    active = account.is_active if is_active is None else bool(is_active)
    if new_roles != roles_held(account) and kind_of(account) == SSO:
        raise ServiceError({"roles": "This account signs in through the identity provider, whose groups set its "
                                     "global roles at each sign-in: change the sign-on mapping (Teams, Sign-on) "
                                     "instead."}, status=409)
    loses_admin = has_role(account, ADMIN) and not (active and (account.is_superuser or ADMIN in new_roles))
    if loses_admin and account.pk == getattr(user, "pk", None):
        raise ServiceError("You cannot deactivate your own account or give up your own admin role: ask another "
                           "admin.", status=409)
    with transaction.atomic(), acting(user, source_ip):
        account = User.objects.select_for_update().get(pk=account.pk)
        if loses_admin and not _other_admins(account):
            raise ServiceError(f"{account.get_username()} is the last active admin: make someone else admin first.",
                               status=409)
        for field, value in profile.items():
            setattr(account, field, value)
        account.is_active = active
        account.save(update_fields=[*profile, "is_active"])  # recorded: user.update or user.deactivate
        set_global_roles(account, new_roles)
    return account


def issue_password_link(account: User, *, user, base_url: str = "", source_ip: str = "") -> PasswordLink:
    """Take the account's password away now and give a one-time link to set a new one (a reset, or an invitation
    sent again). An earlier link stops working."""
    _check(user)
    if account.is_superuser and not getattr(user, "is_superuser", False):
        raise ServiceError("Only a superuser resets a superuser's password.", status=403)
    kind = kind_of(account)
    if kind != LOCAL:
        raise ServiceError(f"This account signs in with {KINDS[kind]}, never with a password.", status=409)
    if not account.is_active:
        raise ServiceError("This account is deactivated: reactivate it first.", status=409)
    if not settings.FLEETWEB_LOCAL_LOGIN and account.get_username() != settings.FLEETWEB_BREAK_GLASS_ADMIN:
        raise ServiceError("Password sign-in is switched off (FLEETWEB_LOCAL_LOGIN=false): people sign in through "
                           "the identity provider.", status=409)
    with transaction.atomic(), acting(user, source_ip):
        account = User.objects.select_for_update().get(pk=account.pk)
        account.set_unusable_password()
        account._audit_action = "user.password_reset"  # type: ignore[attr-defined]  # names the receiver's event
        account.save(update_fields=["password"])
    return _link(account, base_url=base_url, invited=False)


def _link(account: User, *, base_url: str, invited: bool) -> PasswordLink:
    uid = urlsafe_base64_encode(force_bytes(account.pk))
    path = reverse("set_password", args=[uid, default_token_generator.make_token(account)])
    url = f"{(base_url or settings.FLEETWEB_BASE_URL).rstrip('/')}{path}"
    expires_at = timezone.now() + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT)
    if not (settings.EMAIL_HOST and account.email):
        return PasswordLink(url=url, expires_at=expires_at)
    hours = settings.PASSWORD_RESET_TIMEOUT // 3600
    subject = "Your Fleetweb account" if invited else "Set a new Fleetweb password"
    body = (f"{'An account was created for you' if invited else 'Your password was reset'} on Fleetweb "
            f"(username: {account.get_username()}).\n\nSet your password here within {hours} hours; the link "
            f"works once:\n\n{url}\n\nIf you did not expect this, tell your platform team.\n")
    try:
        send_mail(subject, body, None, [account.email])
    except (OSError, smtplib.SMTPException):
        return PasswordLink(url=url, expires_at=expires_at,
                            mail_problem="The mail server did not take the message: pass the link on yourself.")
    return PasswordLink(url=url, expires_at=expires_at, mailed_to=account.email)


def account_for_link(uidb64: str, token: str) -> User:
    """The account a set-password link is for, or ServiceError (the same words whatever is wrong with it)."""
    try:
        pk = int(urlsafe_base64_decode(uidb64).decode())
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ServiceError(BAD_LINK, status=404) from None
    account = User.objects.filter(pk=pk, is_active=True).first()
    if account is None or kind_of(account) != LOCAL or not default_token_generator.check_token(account, token):
        raise ServiceError(BAD_LINK, status=404)
    return account


def set_password_from_link(uidb64: str, token: str, *, password: str, source_ip: str = "") -> User:
    """The account's owner sets their password; the link stops working."""
    account = account_for_link(uidb64, token)
    try:
        validate_password(password, account)
    except ValidationError as exc:
        raise ServiceError({"password": " ".join(exc.messages)}) from None
    with transaction.atomic(), acting(account, source_ip):
        account = User.objects.select_for_update().get(pk=account.pk)
        if not default_token_generator.check_token(account, token):  # used a moment ago by another request
            raise ServiceError(BAD_LINK, status=404)
        account.set_password(password)
        account._audit_action = "user.password_set"  # type: ignore[attr-defined]  # names the receiver's event
        account.save(update_fields=["password"])
    return account
