"""The agent program stands alone (no Django, none of the hub's code) and refuses what it must: a hub reached over
plain http beyond this machine, and work items that are not API server paths."""

from __future__ import annotations

import subprocess
import sys

from fleetagent.agent import Agent


def test_the_agent_imports_no_django_and_none_of_the_hub():
    code = ("import sys, fleetagent.agent, fleetagent.__main__; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'rest_framework', 'celery', 'fleetweb',"
            " 'foundation', 'inventory', 'agents', 'notifications', 'governance', 'rollouts', 'kubernetes'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_agent_refuses_a_plain_http_hub_beyond_loopback(tmp_path):
    (tmp_path / "token").write_text("t")
    (tmp_path / "ca.crt").write_text("")
    run = subprocess.run([sys.executable, "-m", "fleetagent", "--hub", "http://fleetweb.example.com",
                          "--kube-server", "https://127.0.0.1:1", "--token-file", str(tmp_path / "token"),
                          "--ca-file", str(tmp_path / "ca.crt")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "https://" in run.stderr


class _NoKube:
    server = "https://127.0.0.1:1"

    def request(self, *args, **kwargs):
        raise AssertionError("a refused item reached the API server")


def test_the_agent_runs_only_api_server_paths_and_known_operations():
    agent = Agent.__new__(Agent)
    agent.kube = _NoKube()  # type: ignore[assignment]
    for item in ({"id": "a", "op": "http", "method": "GET", "path": "https://evil.example/x"},
                 {"id": "b", "op": "http", "method": "GET", "path": "/api/../../etc/passwd"},
                 {"id": "c", "op": "http", "method": "CONNECT", "path": "/api/v1/nodes"},
                 {"id": "d", "op": "exec", "path": "/api/v1/nodes"},
                 {"id": "e", "op": "http", "method": "GET", "path": "relative"}):
        result = agent.execute({**item, "deadline": 9e9, "timeout": 5})
        assert result["id"] == item["id"] and result["error"]["kind"] == "protocol", item
