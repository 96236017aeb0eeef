"""An agent as the hub sees it, for unit tests: a real key pair and real signatures (the agent's own code,
fleetagent.hub), speaking to the hub's doors through Django's test client."""

from __future__ import annotations

import base64
import json
import time

from django.test import Client

from agents import services
from agents.models import Registration
from fleetagent.hub import new_key, public_text, signed_text

IDENTITY = {"ca_fingerprint": "AB:CD", "kube_system_uid": "3f1c2b9e-0000-4000-8000-000000000001",
            "kubernetes_version": "v1.36.3", "node_count": 3, "server": "https://10.0.0.1:6443"}


class FakeAgent:
    def __init__(self, client: Client | None = None):
        self.key = new_key()
        self.client = client or Client()
        self.credential = ""
        self.registration = ""

    @property
    def public(self) -> str:
        return public_text(self.key)

    def headers(self, method: str, path: str, body: bytes, *, date: int | None = None, key=None) -> dict:
        date_text = str(int(time.time()) if date is None else date)
        signature = (key or self.key).sign(signed_text(method, path, date_text, body))
        headers = {"X-Fleetweb-Date": date_text, "X-Fleetweb-Signature": base64.b64encode(signature).decode()}
        if self.credential:
            headers["Authorization"] = f"Bearer {self.credential}"
        return headers

    def call(self, method: str, path: str, body: dict | bytes | None = None, **kwargs):
        full = f"/agent/v1/{path}"
        data = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
        headers = self.headers(method, full, data, **kwargs)
        if method == "GET":
            return self.client.get(full, headers=headers)
        return self.client.generic(method, full, data, content_type="application/json", headers=headers)

    def register(self, token: str, **identity):
        answer = self.call("POST", "register", {"bootstrap_token": token, "public_key": self.public,
                                                "identity": {**IDENTITY, **identity}, "agent_version": "0.1.0"})
        if answer.status_code == 201:
            self.registration = answer.json()["registration"]
        return answer

    def pickup(self):
        answer = self.call("GET", f"registrations/{self.registration}")
        if answer.status_code == 200 and answer.json().get("credential"):
            self.credential = answer.json()["credential"]
        return answer


def accepted_agent(admin, name: str = "edge-1", environment: str = "dev") -> tuple[FakeAgent, object]:
    """An agent registered, accepted and holding its credential, after its first heartbeat: (agent, cluster)."""
    _token, secret = services.create_bootstrap_token(user=admin, name=name, environment=environment)
    agent = FakeAgent()
    assert agent.register(secret).status_code == 201
    registration = services.decide(Registration.objects.get(pk=agent.registration), accept=True, user=admin)
    assert agent.pickup().status_code == 200
    assert agent.call("POST", "heartbeat", {"agent_version": "0.1.0"}).status_code == 200
    return agent, registration.cluster
