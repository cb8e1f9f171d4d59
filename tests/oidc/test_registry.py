"""OIDC clients in the services TOML: their keys validated, their secrets stored as HMAC-SHA-256."""
from __future__ import annotations

import hashlib
import hmac

import pytest

from idp.core.registry import RegistryError, load_file, parse, replace_all

BASE = '''
[[service]]
name = "E-learning"
protocol = "oidc"
client_id = "elearning"
client_secret = "a-long-random-client-secret-0123456789"
redirect_uris = ["https://elearning.example.edu.pl/oidc/callback"]
scopes = ["openid", "profile", "email", "university"]
grant_types = ["authorization_code", "refresh_token"]
post_logout_redirect_uris = ["https://elearning.example.edu.pl/"]
backchannel_logout_uri = "https://elearning.example.edu.pl/oidc/logout"
first_party = true
id_token_signed_response_alg = "ES256"
'''


def error(text: str) -> str:
    with pytest.raises(RegistryError) as info:
        parse(text, "services.toml")
    return str(info.value)


def test_valid_client_parses():
    [entry] = parse(BASE, "services.toml")
    assert entry["client_id"] == "elearning" and entry["id_token_signed_response_alg"] == "ES256"


@pytest.mark.parametrize("old, new, words", [
    ('scopes = ["openid", "profile", "email", "university"]', 'scopes = ["openid", "admin"]', ["admin", "scope"]),
    ('grant_types = ["authorization_code", "refresh_token"]', 'grant_types = ["authorization_code", "password"]',
     ["password", "grant type"]),
    ('grant_types = ["authorization_code", "refresh_token"]', 'grant_types = ["implicit"]', ["implicit"]),
    ('id_token_signed_response_alg = "ES256"', 'id_token_signed_response_alg = "HS256"',
     ["id_token_signed_response_alg"]),
    ('id_token_signed_response_alg = "ES256"', 'id_token_signed_response_alg = "none"',
     ["id_token_signed_response_alg"]),
    ('redirect_uris = ["https://elearning.example.edu.pl/oidc/callback"]',
     'redirect_uris = ["https://elearning.example.edu.pl/oidc/callback#frag"]', ["redirect_uris", "fragment"]),
    ('redirect_uris = ["https://elearning.example.edu.pl/oidc/callback"]', 'redirect_uris = ["/oidc/callback"]',
     ["redirect_uris"]),
    ('redirect_uris = ["https://elearning.example.edu.pl/oidc/callback"]',
     'redirect_uris = ["javascript:alert(1)"]', ["redirect_uris"]),
    ('post_logout_redirect_uris = ["https://elearning.example.edu.pl/"]',
     'post_logout_redirect_uris = ["https://elearning.example.edu.pl/#x"]', ["post_logout_redirect_uris"]),
    ('first_party = true', 'first_party = "yes"', ["first_party"]),
    ('first_party = true', 'first_party = true\nresponse_types = ["token"]', ["response_types"]),
    ('client_id = "elearning"\n', '', ["client_id"]),
])
def test_invalid_oidc_keys(old, new, words):
    assert old in BASE
    message = error(BASE.replace(old, new))
    assert "E-learning" in message and "services.toml" in message
    for word in words:
        assert word in message, (word, message)


def test_client_credentials_without_a_secret_is_refused():
    text = BASE.replace('client_secret = "a-long-random-client-secret-0123456789"\n', "").replace(
        'grant_types = ["authorization_code", "refresh_token"]', 'grant_types = ["client_credentials"]')
    message = error(text)
    assert "client_credentials" in message and "client_secret" in message


def test_public_client_without_secret_is_fine():
    [entry] = parse(BASE.replace('client_secret = "a-long-random-client-secret-0123456789"\n', ""))
    assert "client_secret" not in entry


def test_client_id_used_twice_is_refused():
    second = BASE.replace('name = "E-learning"', 'name = "Moodle"')
    assert "twice" in error(BASE + second)


def test_secret_stored_as_hmac_not_plain_nor_sha256(app, tmp_path):
    from idp.core.registry import by_name

    path = tmp_path / "services.toml"
    path.write_text(BASE, encoding="utf-8")
    load_file(path)
    secret = "a-long-random-client-secret-0123456789"
    stored = by_name("E-learning").client_secret_hash
    assert stored and secret not in stored
    assert stored != hashlib.sha256(secret.encode()).hexdigest()
    assert stored == hmac.new(app.config["SECRET_KEY"].encode(), secret.encode(), hashlib.sha256).hexdigest()
    # The raw column, as a database dump shows it.
    from idp.extensions import db

    raw = db.session.execute(db.text("SELECT client_secret_hash FROM service WHERE client_id = 'elearning'")).scalar()
    assert raw == stored


def test_secret_hash_depends_on_the_instance_key(app):
    from idp.core.registry import by_name

    entries = parse(BASE)
    replace_all([dict(e) for e in entries], secret_key="instance-one")
    one = by_name("E-learning").client_secret_hash
    replace_all([dict(e) for e in entries], secret_key="instance-two")
    assert by_name("E-learning").client_secret_hash != one


def test_registered_secret_authenticates_and_a_changed_one_does_not(app, client):
    """Through the token endpoint: the stored HMAC is what client authentication checks against."""
    import base64

    entries = parse(BASE)
    replace_all([dict(e) for e in entries])

    def introspect(secret: str) -> int:
        auth = base64.b64encode(f"elearning:{secret}".encode()).decode()
        return client.post("/oidc/introspect", data={"token": "x"},
                           headers={"Authorization": f"Basic {auth}"}).status_code

    assert introspect("a-long-random-client-secret-0123456789") == 200
    assert introspect("a-long-random-client-secret-012345678") == 401
    changed = [dict(e, client_secret="a-new-secret-after-rotation-987654321") for e in entries]
    replace_all(changed)
    assert introspect("a-long-random-client-secret-0123456789") == 401
    assert introspect("a-new-secret-after-rotation-987654321") == 200
