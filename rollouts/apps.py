from django.apps import AppConfig


class RolloutsConfig(AppConfig):
    """Staged multi-cluster rollouts with approvals (see the rollouts issue)."""

    name = "rollouts"
