"""Small request helpers shared by pages, API and signals."""


def client_ip(request) -> str:
    """The address a request came from, as the WSGI server saw it ('' without a request).

    Behind a proxy this is the proxy's address; Fleetweb does not trust X-Forwarded-For blindly.
    """
    return request.META.get("REMOTE_ADDR", "") if request is not None else ""
