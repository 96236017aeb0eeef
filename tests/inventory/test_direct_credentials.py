"""The one builder of direct credentials (inventory/credentials.py): the same refusal through the page and the API,
PEM parsed rather than looked for, and nothing typed quoted back."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from inventory import credentials
from inventory.models import Cluster


def pem_pair() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleetweb-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


CERT, KEY = pem_pair()
TRUNCATED = CERT[:80] + "\n-----END CERTIFICATE-----\n"


def test_valid_client_certificate_credentials_are_built():
    built = credentials.direct(server="https://api.example.com:6443/", ca_data=CERT, client_cert=CERT,
                               client_key=KEY)
    assert built == {"method": "client_cert", "server": "https://api.example.com:6443", "ca_data": CERT.strip(),
                     "client_cert": CERT.strip(), "client_key": KEY.strip()}


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"ca_data": TRUNCATED, "token": "t"}, "ca_data", "CA bundle is not a valid PEM certificate"),
    ({"ca_data": "hello", "token": "t"}, "ca_data", "must be PEM"),
    ({"client_cert": TRUNCATED, "client_key": KEY}, "client_cert", "not a valid PEM certificate"),
    ({"client_cert": CERT, "client_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"},
     "client_key", "not a valid PEM private key"),
    ({"client_cert": CERT}, "client_key", "needs its private key"),
    ({"token": "t", "client_cert": CERT, "client_key": KEY}, "token", "not both"),
    ({}, "token", "bearer token or a client certificate is required"),
])
def test_each_bad_field_is_named(fields, field, message):
    with pytest.raises(credentials.CredentialsError) as caught:
        credentials.direct(server="https://api.example.com:6443", **fields)
    assert message in caught.value.errors[field]
    assert "AAAA" not in caught.value.message and "hello" not in caught.value.message


@pytest.mark.django_db
def test_page_and_api_refuse_a_truncated_ca_bundle_with_the_same_words(client, api_as, operator):
    client.force_login(operator)
    page = client.post("/clusters/attach/", {"method": "token", "server": "https://api.example.com:6443",
                                             "ca_data": TRUNCATED, "token": "tok", "meta-name": "new-one",
                                             "meta-environment": "dev", "meta-sync_interval": 60})
    api = api_as(operator).post("/api/v1/clusters/", {"name": "new-one", "server": "https://api.example.com:6443",
                                                      "ca_data": TRUNCATED, "token": "tok"}, format="json")
    words = "The CA bundle is not a valid PEM certificate"
    assert page.status_code == 400 and words.encode() in page.content
    assert api.status_code == 400 and words in api.json()["errors"]["ca_data"][0]
    assert b'value="tok"' not in page.content, "the token is never rendered back"
    assert not Cluster.objects.exists()
