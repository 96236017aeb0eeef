"""Choices of the governance app."""

from django.db import models

from inventory import choices as inventory_choices


class Mode(models.TextChoices):
    AUDIT = "audit", "audit (report only)"
    ENFORCE = "enforce", "enforce (clusters refuse violating objects)"


# Inventory holds it: alert rules there filter violations by it (layers point one way).
Severity = inventory_choices.Severity


class EnforcementState(models.TextChoices):
    PENDING = "pending", "pending"
    INSTALLED = "installed", "installed"
    FAILED = "failed", "failed"
