"""Registered clusters: the single-use bootstrap tokens an admin hands out, the registrations agents present with
them (pending until an admin accepts or rejects), and the agent of each accepted cluster with its short-lived
credential, bound to the key pair the agent made itself.

Secrets are stored only as SHA-256 digests: a bootstrap token and a credential are shown (or sent) once."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from inventory.choices import Environment
from inventory.models import Cluster


class RegistrationState(models.TextChoices):
    PENDING = "pending", "pending"
    ACCEPTED = "accepted", "accepted"
    REJECTED = "rejected", "rejected"


class BootstrapToken(models.Model):
    """A single-use token that lets one agent ask to register; it expires and is spent by its first use."""

    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12, help_text="The token's first characters, to recognise it")
    name = models.SlugField(max_length=63, help_text="The name the cluster will have once accepted")
    environment = models.CharField(max_length=16, choices=Environment.choices, default=Environment.DEV)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"bootstrap token {self.prefix}… for {self.name}"


class Registration(models.Model):
    """What an agent presented with a bootstrap token: its public key and what identifies its cluster."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    token = models.OneToOneField(BootstrapToken, on_delete=models.PROTECT, related_name="registration")
    name = models.SlugField(max_length=63)
    environment = models.CharField(max_length=16, choices=Environment.choices, default=Environment.DEV)
    public_key = models.CharField(max_length=64, help_text="The agent's Ed25519 public key (base64)")
    ca_fingerprint = models.CharField(max_length=95, help_text="SHA-256 of the API server's CA certificate")
    kube_system_uid = models.CharField(max_length=64)
    kubernetes_version = models.CharField(max_length=64, blank=True)
    node_count = models.PositiveIntegerField(default=0)
    server = models.CharField(max_length=512, blank=True, help_text="The API server URL as the agent sees it")
    agent_version = models.CharField(max_length=32, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=RegistrationState.choices, default=RegistrationState.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    cluster = models.OneToOneField(Cluster, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="registration")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "-created_at"])]

    def __str__(self) -> str:
        return f"registration of {self.name} ({self.state})"


class Agent(models.Model):
    """The agent of an accepted cluster: its key, its current credential (a digest), what it last reported."""

    cluster = models.OneToOneField(Cluster, on_delete=models.CASCADE, related_name="agent")
    public_key = models.CharField(max_length=64)
    credential_digest = models.CharField(max_length=64, unique=True)
    credential_expires_at = models.DateTimeField()
    previous_digest = models.CharField(max_length=64, blank=True, db_index=True,
                                       help_text="The credential renewed last, valid until the new one is used")
    revoked_at = models.DateTimeField(null=True, blank=True)
    version = models.CharField(max_length=32, blank=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    report = models.JSONField(default=dict, blank=True, help_text="What the agent last reported (checks, error)")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["cluster__name"]

    def __str__(self) -> str:
        return f"agent of {self.cluster_id}"

    def __repr__(self) -> str:  # never the digest in a log
        return f"<Agent cluster={self.cluster_id}>"
