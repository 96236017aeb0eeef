"""`manage.py verify_receipt FILE [--public-key BASE64]`: is a signed rollout receipt intact and signed by this
Fleetweb's receipt key (or the key given)? Exit 0 when it is, 1 when it is not."""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandParser

from rollouts import receipts


class Command(BaseCommand):
    help = "Check a signed rollout receipt (JSON as /rollouts/N/receipt.json or the API's ?signed=1 gave it)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")
        parser.add_argument("--public-key", default="", help="base64 Ed25519 public key (default: this Fleetweb's)")

    def handle(self, *args, **options) -> None:
        try:
            with open(options["file"], encoding="utf-8") as handle:
                signed = json.load(handle)
        except (OSError, ValueError) as exc:
            self.stderr.write(f"{options['file']}: cannot be read as JSON ({type(exc).__name__})")
            sys.exit(1)
        who = "the key given" if options["public_key"] else "this Fleetweb"
        if not isinstance(signed, dict) or not receipts.verify(signed, public=options["public_key"] or None):
            self.stderr.write(f"NOT intact or NOT signed by {who}: do not trust this receipt")
            sys.exit(1)
        receipt = signed["receipt"]
        self.stdout.write(f"intact, signed by {who}: rollout #{receipt.get('rollout')} of "
                          f"{receipt.get('application')} revision {receipt.get('revision')}, "
                          f"{len(receipt.get('clusters', []))} cluster(s)")
