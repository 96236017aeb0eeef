"""The WSGI entry point settles a web process: every view loaded, what is loaded frozen out of the cyclic collector's
sight, and collections less often (`foundation.web.settle_web_process`)."""

from __future__ import annotations

import json
import subprocess
import sys

from foundation.web import WEB_GC_THRESHOLDS
from tests.conftest import child_env

PROBE = """
import gc, json, sys
import fleetweb.wsgi
print(json.dumps({"frozen": gc.get_freeze_count(), "thresholds": gc.get_threshold(), "enabled": gc.isenabled(),
                  "views_loaded": "governance.api.views" in sys.modules and "rollouts.views" in sys.modules}))
"""


def test_a_web_process_freezes_what_it_loaded_and_collects_less_often():
    done = subprocess.run([sys.executable, "-c", PROBE], env=child_env(), capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["views_loaded"], "every view module is imported before the freeze"
    assert found["frozen"] > 50_000, "Django, DRF and the views are out of the collector's sight"
    assert tuple(found["thresholds"]) == WEB_GC_THRESHOLDS
    assert found["enabled"], "collections are fewer, not off"
