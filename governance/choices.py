"""Choices of the governance app."""

from django.db import models


class Mode(models.TextChoices):
    AUDIT = "audit", "audit (report only)"
    ENFORCE = "enforce", "enforce (clusters refuse violating objects)"


class Severity(models.TextChoices):
    CRITICAL = "critical", "critical"
    HIGH = "high", "high"
    MEDIUM = "medium", "medium"
    LOW = "low", "low"


class EnforcementState(models.TextChoices):
    PENDING = "pending", "pending"
    INSTALLED = "installed", "installed"
    FAILED = "failed", "failed"
