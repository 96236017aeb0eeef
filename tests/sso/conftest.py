"""Single sign-on against the real provider: `sso` points Fleetweb at it; `sign_in` walks a person through it
like a browser (requests carries the provider's cookies) and hands the answer to Fleetweb's callback."""

from __future__ import annotations

import itertools
import urllib.parse

import pytest
import requests

_people = itertools.count()


@pytest.fixture
def sso(settings, identity_provider):
    def configure(redirect_uri: str = "http://testserver/accounts/sso/callback/"):
        client_id, secret = identity_provider.create_client(redirect_uri)
        settings.FLEETWEB_OIDC_ISSUER = identity_provider.issuer
        settings.FLEETWEB_OIDC_CLIENT_ID = client_id
        settings.FLEETWEB_OIDC_CLIENT_SECRET = secret
        return identity_provider

    return configure


def person(idp, groups: list[str], *, name: str = "") -> tuple[str, str]:
    """A new person in the provider's directory (names are unique per session: the provider outlives tests)."""
    username = name or f"pat-{next(_people)}"
    password = f"idp-pw-{username}"
    idp.add_person(username, password, groups=groups)
    return username, password


def sign_in(client, idp, username: str, password: str, *, next_url: str = ""):
    """Fleetweb's /accounts/sso/login/ -> the provider's login form -> consent -> Fleetweb's callback; returns the
    callback's response."""
    start = client.get("/accounts/sso/login/" + (f"?next={urllib.parse.quote(next_url)}" if next_url else ""))
    assert start.status_code == 302, start.content[:500]
    browser = requests.Session()
    url = start["Location"]
    for _ in range(12):
        if url.startswith("http://testserver/"):
            split = urllib.parse.urlsplit(url)
            callback = split.path + ("?" + split.query if split.query else "")
            response = client.get(callback)
            response.callback = callback  # for replaying it
            return response
        answer = browser.get(url, allow_redirects=False, timeout=10)
        if answer.status_code in (302, 303):
            url = urllib.parse.urljoin(url, answer.headers["Location"])
            continue
        assert answer.status_code == 200 and "idp-username" in answer.text, answer.text[:500]
        challenge = answer.text.split("name='challenge' value='", 1)[1].split("'", 1)[0]
        posted = browser.post(urllib.parse.urljoin(url, "/login"), data={
            "challenge": challenge, "username": username, "password": password}, allow_redirects=False, timeout=10)
        assert posted.status_code == 302, posted.text[:500]
        url = urllib.parse.urljoin(url, posted.headers["Location"])
    raise AssertionError("the sign-in did not come back to Fleetweb")
