"""Write the agent's Helm chart (charts/fleetweb-agent) from the hub's agent manifest (agents/manifests.py), or with
--check say whether the committed chart still is what it writes (`make check` runs that: the chart and the manifest
never disagree)."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from agents import manifests


class Command(BaseCommand):
    help = "Write charts/fleetweb-agent from the hub's agent manifest (--check: fail when it differs)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--check", action="store_true", help="Change nothing; fail when the chart differs")

    def handle(self, *args, check: bool = False, **options) -> None:
        root = Path(settings.BASE_DIR) / manifests.CHART_DIR
        files = manifests.chart_files()
        stale = [name for name, text in files.items()
                 if not (root / name).is_file() or (root / name).read_text() != text]
        if check:
            if stale:
                raise CommandError(f"{manifests.CHART_DIR} differs from the hub's agent manifest ({', '.join(stale)}): "
                                   "run `python manage.py agent_chart` and commit the result")
            self.stdout.write(f"{manifests.CHART_DIR} is the hub's agent manifest")
            return
        for name in stale:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(files[name])
        self.stdout.write(f"wrote {len(stale)} file(s) of {manifests.CHART_DIR}")
