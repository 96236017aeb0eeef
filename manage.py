#!/usr/bin/env python
"""Django's command-line utility for Fleetweb."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleetweb.settings")
    if os.environ["DJANGO_SETTINGS_MODULE"] == "fleetweb.settings":
        from fleetweb import embedded

        embedded.start()  # PostgreSQL and Redis when DATABASE_URL / REDIS_URL are unset: the settings start nothing
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
