"""Credentials at rest: encrypted, rotated by the command, never in repr or logs."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from foundation import crypto
from foundation.env import ConfigError
from inventory.models import ClusterCredential
from notifications.models import Channel
from tests.builders import make_cluster

pytestmark = pytest.mark.django_db


def test_round_trip_and_ciphertext_hides_the_secret():
    token = crypto.encrypt_json({"token": "s3cret"})
    assert "s3cret" not in token
    assert crypto.decrypt_json(token) == {"token": "s3cret"}


def test_rotation_reencrypts_under_the_new_key(settings):
    old = settings.FLEETWEB_ENCRYPTION_KEYS[0]
    cluster = make_cluster("c1")
    before = ClusterCredential.objects.get(cluster=cluster).ciphertext
    new = Fernet.generate_key().decode()
    settings.FLEETWEB_ENCRYPTION_KEYS = [new, old]
    call_command("rotate_encryption_keys")
    after = ClusterCredential.objects.get(cluster=cluster)
    assert after.ciphertext != before
    settings.FLEETWEB_ENCRYPTION_KEYS = [new]  # the old key can now be dropped
    assert after.open()["token"] == "secret-token-of-c1"


def test_rotation_covers_alert_channel_secrets(settings):
    old = settings.FLEETWEB_ENCRYPTION_KEYS[0]
    channel = Channel.objects.create(name="ops", kind="slack", target_host="hooks.slack.com",
                                     ciphertext=Channel.seal({"url": "https://hooks.slack.com/services/T/B/X"}))
    email = Channel.objects.create(name="mail", kind="email", recipients=["a@example.com"])
    new = Fernet.generate_key().decode()
    settings.FLEETWEB_ENCRYPTION_KEYS = [new, old]
    call_command("rotate_encryption_keys")
    settings.FLEETWEB_ENCRYPTION_KEYS = [new]
    channel.refresh_from_db()
    email.refresh_from_db()
    assert channel.open() == {"url": "https://hooks.slack.com/services/T/B/X"}
    assert email.ciphertext == "" and email.open() == {}


def test_a_missing_key_is_a_clear_error(settings):
    cluster = make_cluster("c1")
    settings.FLEETWEB_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ConfigError, match="cannot be decrypted with FLEETWEB_ENCRYPTION_KEYS"):
        ClusterCredential.objects.get(cluster=cluster).open()
    settings.FLEETWEB_ENCRYPTION_KEYS = ["not-a-key"]
    with pytest.raises(ConfigError, match="not a Fernet key"):
        crypto.encrypt_json({})


def test_repr_never_shows_secrets():
    credential = ClusterCredential.objects.get(cluster=make_cluster("c1"))
    assert "secret" not in repr(credential) and "secret" not in str(credential)


def test_rotation_covers_application_sources_credentials_and_webhook_secrets(settings, admin_user):
    """Found missing (stop 40): source credentials and webhook secrets stayed under the old key, so dropping it
    broke every private source and webhook."""
    from rollouts import services, sourcing
    from rollouts.models import Source, SourceCredential

    settings.FLEETWEB_SOURCE_ALLOW_HTTP = True
    settings.FLEETWEB_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    old = settings.FLEETWEB_ENCRYPTION_KEYS[0]
    app = services.create_application(name="shop", namespace="shop", user=admin_user,
                                      manifests_text="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    credential = sourcing.create_credential(user=admin_user, name="shop-git", secret="git-token")
    sourcing.set_source(app, user=admin_user, kind="git", url="http://127.0.0.1:9/shop.git", credential=credential)
    _path, secret = sourcing.issue_webhook(app, user=admin_user)
    new = Fernet.generate_key().decode()
    settings.FLEETWEB_ENCRYPTION_KEYS = [new, old]
    call_command("rotate_encryption_keys")
    settings.FLEETWEB_ENCRYPTION_KEYS = [new]
    assert SourceCredential.objects.get(pk=credential.pk).open() == "git-token"
    assert Source.objects.get(application=app).webhook_secret() == secret
