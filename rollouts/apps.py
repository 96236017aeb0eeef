from django.apps import AppConfig


class RolloutsConfig(AppConfig):
    """Staged multi-cluster rollouts with approvals (see the rollouts issue)."""

    name = "rollouts"

    def ready(self) -> None:
        from foundation import crypto
        from rollouts import (
            alerts,  # noqa: F401 - the drift alert condition
            metrics,  # noqa: F401 - registers the rollout metrics
            pages,
            signals,  # noqa: F401 - connects the receiver that voids approvals on cluster changes
        )
        from rollouts.models import Source, SourceCredential, SourceTest

        pages.register()  # the overview's rollout cards
        crypto.sealed(SourceCredential, "source credentials")
        crypto.sealed(Source, "source webhook secrets", field="webhook_ciphertext")
        crypto.sealed(SourceTest, "source tests")
