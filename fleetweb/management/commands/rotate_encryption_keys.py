"""Re-encrypt every stored secret under the first key of FLEETWEB_ENCRYPTION_KEYS: whatever the apps registered as
sealed (`foundation.crypto.sealed`): cluster credentials, attach drafts still waiting, alert channels' URLs and
signing secrets, application sources' credentials and webhook secrets, source tests still kept.

Rotation: put a new key first (`NEW,OLD`), run this, then drop OLD.
"""

from django.core.management.base import BaseCommand
from django.db import transaction

from foundation import crypto
from foundation.audit import record


class Command(BaseCommand):
    help = ("Re-encrypt all stored secrets (cluster credentials, channel URLs, attach drafts, source credentials and "
            "webhook secrets) under the newest key.")

    def handle(self, *args, **options) -> None:
        counts = {}
        with transaction.atomic():
            for model, what, also, field in crypto.SEALED:
                count = 0
                rows = (model.objects.select_for_update()  # type: ignore[attr-defined]
                        .exclude(**{field: ""}).order_by("pk").only("pk", field))
                for row in rows:
                    setattr(row, field, crypto.rotate(getattr(row, field)))
                    row.save(update_fields=[field, *also])
                    count += 1
                counts[what] = count
            summary = ", ".join(f"{n} {name}" for name, n in counts.items())
            record(user=None, action="credentials.rotate", message=f"re-encrypted {summary}")
        self.stdout.write(f"Re-encrypted {summary} under the first key.")
