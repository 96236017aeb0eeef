"""Logins, failed logins and logouts go to the audit log; inventory changes trigger evaluation."""

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from fleetweb.web import client_ip
from governance.audit import record
from inventory.signals import clusters_changed


@receiver(user_logged_in)
def audit_login(sender, request, user, **kwargs):
    record(user=user, action="auth.login", source_ip=client_ip(request), target_name=user.get_username())


@receiver(user_logged_out)
def audit_logout(sender, request, user, **kwargs):
    if user is not None:
        record(user=user, action="auth.logout", source_ip=client_ip(request), target_name=user.get_username())


@receiver(user_login_failed)
def audit_login_failed(sender, credentials, request=None, **kwargs):
    # Only the username: never the password that was tried.
    username = str((credentials or {}).get("username", ""))[:150]
    record(user=None, action="auth.login_failed", source_ip=client_ip(request), target_name=username,
           message=f"failed login for '{username}'")


@receiver(clusters_changed)
def reevaluate(sender, cluster_ids, reason, **kwargs):
    """After a sync, an attach, an edit or a group change: evaluate those clusters once committed."""
    from governance.services import _reevaluate

    _reevaluate(cluster_ids)
