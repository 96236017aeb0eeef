"""`manage.py create_token USER --name ci [--days 90] [--read-only]`: print a new API token of USER (once)."""

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from foundation.errors import ServiceError
from inventory.people.tokens import MAX_DAYS, create_token


class Command(BaseCommand):
    help = "Create an API token for a user and print its key (shown once; only a digest is stored)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="What uses the token (shown on 'My tokens')")
        parser.add_argument("--days", type=int, default=90, help=f"Days until it expires (1-{MAX_DAYS})")
        parser.add_argument("--read-only", action="store_true", help="The token may only read")

    def handle(self, *args, **options) -> None:
        owner = User.objects.filter(username=options["username"]).first()
        if owner is None:
            raise CommandError(f"No user named '{options['username']}'.")
        try:
            _token, key = create_token(owner=owner, user=None, name=options["name"], days=options["days"],
                                       read_only=options["read_only"])
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(key)
