"""Re-encrypt every stored credential under the first key of FLEETWEB_ENCRYPTION_KEYS.

Rotation: put a new key first (`NEW,OLD`), run this, then drop OLD.
"""

from django.core.management.base import BaseCommand
from django.db import transaction

from fleetweb import crypto
from fleetweb.audit import record
from inventory.models import ClusterCredential


class Command(BaseCommand):
    help = "Re-encrypt all stored cluster credentials under the newest encryption key."

    def handle(self, *args, **options) -> None:
        count = 0
        with transaction.atomic():
            for credential in ClusterCredential.objects.select_for_update().only("pk", "ciphertext"):
                credential.ciphertext = crypto.rotate(credential.ciphertext)
                credential.save(update_fields=["ciphertext", "rotated_at"])
                count += 1
            record(user=None, action="credentials.rotate", message=f"re-encrypted {count} credentials")
        self.stdout.write(f"Re-encrypted {count} credentials under the first key.")
