"""What changes accounts and access goes to the audit log whatever the door (page, API, `/admin/`, shell, command):
logins, failed logins (one row per username, address and minute, with a count), logouts, users, roles, API tokens,
and every save or delete made in the admin. Inventory changes trigger evaluation."""

from datetime import timedelta

from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.models import Group, User
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models import F
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import receiver
from django.utils import timezone

from foundation.audit import record
from foundation.models import AuditEvent
from foundation.roles import ROLES
from foundation.web import client_ip, current_actor
from governance.services import _reevaluate, reevaluate_after_sync
from inventory.signals import clusters_changed

USER_FIELDS = ("username", "first_name", "last_name", "email", "is_active", "is_staff", "is_superuser")


@receiver(user_logged_in)
def audit_login(sender, request, user, **kwargs) -> None:
    record(user=user, action="auth.login", source_ip=client_ip(request), target_name=user.get_username())


@receiver(user_logged_out)
def audit_logout(sender, request, user, **kwargs) -> None:
    if user is not None:
        record(user=user, action="auth.logout", source_ip=client_ip(request), target_name=user.get_username())


@receiver(user_login_failed)
def audit_login_failed(sender, credentials, request=None, **kwargs) -> None:
    """One row per username and address per minute, its count growing (the only update the log allows): a
    password-guessing run is on the record without flooding it."""
    username = str((credentials or {}).get("username", ""))[:150]  # only the username, never the password
    ip = client_ip(request) or None
    same_address = {"source_ip": ip} if ip else {"source_ip__isnull": True}
    grown = AuditEvent.objects.filter(action="auth.login_failed", target_name=username, **same_address,
                                      at__gte=timezone.now() - timedelta(minutes=1)).order_by("-at")[:1]
    if AuditEvent.objects.filter(pk__in=grown.values("pk")).update(count=F("count") + 1):
        return
    record(user=None, action="auth.login_failed", source_ip=ip or "", target_name=username,
           message=f"failed login for '{username}'")


@receiver(user_locked_out)
def audit_locked_out(sender, request=None, username=None, ip_address=None, **kwargs) -> None:
    """django-axes locked logins for a username or an address (FLEETWEB_LOGIN_FAILURE_LIMIT failures)."""
    name = str(username or "")[:150]
    ip = ip_address or client_ip(request) or None
    if AuditEvent.objects.filter(action="auth.locked_out", target_name=name, source_ip=ip,
                                 at__gte=timezone.now() - settings.AXES_COOLOFF_TIME).exists():
        return  # each refused attempt while locked signals again: one row per lock-out
    record(user=None, action="auth.locked_out", source_ip=ip_address or client_ip(request) or "", target_name=name,
           message=f"logins locked for '{name}' or from {ip_address or 'an unknown address'} after "
                   f"{settings.AXES_FAILURE_LIMIT} failures")


@receiver(post_delete, sender=AccessAttempt)
def audit_unlocked(sender, instance: AccessAttempt, **kwargs) -> None:
    """A lock-out record removed: by `axes_reset*` commands (an unlock), a successful login or its expiry."""
    if instance.failures_since_start >= settings.AXES_FAILURE_LIMIT:
        actor, ip = current_actor()
        record(user=actor, action="auth.unlocked", source_ip=ip, target_name=str(instance.username or "")[:150],
               message=f"login lock lifted for '{instance.username}' from {instance.ip_address}")


def _user_view(user: User) -> dict:
    return {f: getattr(user, f) for f in USER_FIELDS}


@receiver(pre_save, sender=User)
def remember_user_before(sender, instance: User, **kwargs) -> None:
    instance._audit_before = None  # type: ignore[attr-defined]  # carried from pre_save to post_save
    if instance.pk:
        old = User.objects.filter(pk=instance.pk).first()
        if old is not None:
            instance._audit_before = {**_user_view(old), "password": old.password}  # type: ignore[attr-defined]


@receiver(post_save, sender=User)
def audit_user_saved(sender, instance: User, created: bool, update_fields=None, **kwargs) -> None:
    if update_fields and set(update_fields) <= {"last_login"}:
        return  # every login touches last_login; the login itself is recorded
    actor, ip = current_actor()
    if created:
        record(user=actor, action="user.create", target=instance, source_ip=ip, after=_user_view(instance))
        return
    before = getattr(instance, "_audit_before", None) or {}
    after = _user_view(instance)
    changed = {f for f in USER_FIELDS if before.get(f) != after[f]}
    password_changed = bool(before) and before.get("password") != instance.password
    if not changed and not password_changed:
        return
    action = getattr(instance, "_audit_action", None) or (
        "user.deactivate" if "is_active" in changed and not instance.is_active else "user.update")
    record(user=actor, action=action, target=instance, source_ip=ip,
           before={f: before.get(f) for f in sorted(changed)},
           after={**{f: after[f] for f in sorted(changed)}, **({"password": "changed"} if password_changed else {})})


@receiver(post_delete, sender=User)
def audit_user_deleted(sender, instance: User, **kwargs) -> None:
    actor, ip = current_actor()
    record(user=actor, action="user.delete", target_name=instance.get_username(), source_ip=ip,
           before=_user_view(instance))


@receiver(m2m_changed, sender=User.groups.through)
def audit_roles_changed(sender, instance, action: str, reverse: bool, pk_set, **kwargs) -> None:
    """Roles are groups: granting `approver` or `admin` is on the record, from either side of the relation."""
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    actor, ip = current_actor()
    verb = "grant" if action == "post_add" else "revoke"
    if action == "pre_clear":
        pk_set = set((instance.user_set if reverse else instance.groups).values_list("pk", flat=True))
    if not pk_set:
        return
    if reverse:  # group.user_set.add(users): one event per user
        pairs = [(u, instance.name) for u in User.objects.filter(pk__in=pk_set)]
    else:
        pairs = [(instance, g) for g in Group.objects.filter(pk__in=pk_set).values_list("name", flat=True)]
    for user, group_name in pairs:
        record(user=actor, action=f"user.role_{verb}", target=user, source_ip=ip,
               after={"role": group_name, "is_fleetweb_role": group_name in ROLES})


@receiver(post_save, sender=Group)
def audit_group_saved(sender, instance: Group, created: bool, **kwargs) -> None:
    actor, ip = current_actor()
    record(user=actor, action="role.create" if created else "role.update", target=instance, source_ip=ip,
           after={"name": instance.name})


@receiver(post_delete, sender=Group)
def audit_group_deleted(sender, instance: Group, **kwargs) -> None:
    actor, ip = current_actor()
    record(user=actor, action="role.delete", target_name=instance.name, source_ip=ip)


@receiver(post_save, sender=LogEntry)
def audit_admin_action(sender, instance: LogEntry, created: bool, **kwargs) -> None:
    """Every add, change and delete made in `/admin/`, in the admin's own transaction."""
    if not created:
        return
    verb = {ADDITION: "add", CHANGE: "change", DELETION: "delete"}.get(instance.action_flag, "change")
    model = instance.content_type.model_class() if instance.content_type is not None else None
    _, ip = current_actor()
    record(user=instance.user, action=f"admin.{verb}", source_ip=ip,
           target_name=f"{model._meta.label_lower if model else 'object'} {instance.object_repr}"[:255],
           after={"object_id": instance.object_id, "change": instance.get_change_message()})


@receiver(clusters_changed)
def reevaluate(sender, cluster_ids, reason, **kwargs) -> None:
    """After a sync, an attach, an edit or a group change: evaluate those clusters once committed (after a sync,
    gathered with the other clusters synced within a few seconds)."""
    if reason == "sync":
        reevaluate_after_sync(cluster_ids)
    else:
        _reevaluate(cluster_ids)
