from django.apps import AppConfig


class RolloutsConfig(AppConfig):
    """Staged multi-cluster rollouts with approvals (see the rollouts issue)."""

    name = "rollouts"

    def ready(self) -> None:
        from rollouts import (
            metrics,  # noqa: F401 - registers the rollout metrics
            pages,
            signals,  # noqa: F401 - connects the receiver that voids approvals on cluster changes
        )

        pages.register()  # the overview's rollout cards
