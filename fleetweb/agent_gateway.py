"""The agents' gateway (`agents.gateway`): `python -m fleetweb.agent_gateway` serves /agent/v1/ with uvicorn on
FLEETWEB_AGENT_GATEWAY_BIND, in FLEETWEB_AGENT_GATEWAY_WORKERS processes. Agents are given its public address,
FLEETWEB_AGENT_URL; the web tier (gunicorn) still answers agents sent to it, without holding their polls."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleetweb.settings")

from fleetweb.wsgi import application as web  # noqa: E402, I001 - sets Django up, before the apps' modules

from django.conf import settings  # noqa: E402

from agents.gateway import make_app  # noqa: E402

application = make_app(web)


def main() -> None:
    import uvicorn

    host, _, port = settings.FLEETWEB_AGENT_GATEWAY_BIND.rpartition(":")
    # No proxy headers here: who is asking is decided by foundation.web.client_ip (FLEETWEB_TRUSTED_PROXIES), as on
    # every other door. Idle connections stay open past a heartbeat interval (each agent keeps one).
    uvicorn.run("fleetweb.agent_gateway:application", host=host or "0.0.0.0", port=int(port),
                workers=settings.FLEETWEB_AGENT_GATEWAY_WORKERS, http="httptools", loop="uvloop", lifespan="on",
                proxy_headers=False, access_log=False, log_level="warning",
                timeout_keep_alive=settings.FLEETWEB_AGENT_HEARTBEAT * 2 + 5,
                # On SIGTERM held polls end within 3 s (the agents ask again, elsewhere): nothing was taken for them.
                timeout_graceful_shutdown=3)


if __name__ == "__main__":
    main()
