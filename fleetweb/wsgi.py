"""WSGI entry point for gunicorn: Django's handler, with the agents' signed doors (the poll for work, heartbeats,
reports, answers, renewal) answered in front of it (`agents.lean`)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleetweb.settings")
django_application = get_wsgi_application()

from agents import lean  # noqa: E402 - Django is set up above
from foundation.web import settle_web_process  # noqa: E402

application = lean.wrap(django_application)
settle_web_process()
