"""Discovery (OpenID Connect Discovery 1.0 §3, RFC 8414) and the JWKS a relying party fetches."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from joserfc.jwk import KeySet

from tests.oidc.conftest import ISSUER, local

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.fixture
def metadata(client, clients) -> dict:
    r = client.get("/.well-known/openid-configuration")
    assert r.status_code == 200
    assert r.mimetype == "application/json"
    return r.get_json()


def test_discovery_required_fields(metadata):
    assert metadata["issuer"] == ISSUER  # exactly the iss of every token (no trailing slash drift)
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "end_session_endpoint",
                "introspection_endpoint", "revocation_endpoint"):
        assert metadata[key].startswith(ISSUER + "/"), key
    assert metadata["response_types_supported"] == ["code"]
    assert "implicit" not in metadata["grant_types_supported"]
    assert "password" not in metadata["grant_types_supported"]
    assert set(metadata["grant_types_supported"]) == {"authorization_code", "refresh_token", "client_credentials"}
    assert metadata["subject_types_supported"] == ["public"]
    assert set(metadata["id_token_signing_alg_values_supported"]) == {"RS256", "ES256", "EdDSA"}
    assert "none" not in metadata["id_token_signing_alg_values_supported"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert {"openid", "profile", "email", "university"} <= set(metadata["scopes_supported"])
    assert set(metadata["token_endpoint_auth_methods_supported"]) >= {"client_secret_basic", "client_secret_post",
                                                                      "none"}
    assert "none" not in metadata["introspection_endpoint_auth_methods_supported"]
    assert set(metadata["prompt_values_supported"]) >= {"none", "login", "consent"}
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert metadata["backchannel_logout_supported"] is True
    assert metadata["backchannel_logout_session_supported"] is True
    assert metadata["frontchannel_logout_supported"] is False
    claims = set(metadata["claims_supported"])
    assert {"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "email", "email_verified",
            "name", "given_name", "family_name", "preferred_username", "album", "role", "affiliations"} <= claims


def test_every_url_in_discovery_answers(client, metadata):
    """Each advertised endpoint exists on this server and answers its protocol's way, not with a 404."""
    path = {k: local(v) for k, v in metadata.items() if k.endswith(("_endpoint", "_uri")) and isinstance(v, str)}
    for key, url in metadata.items():
        if key.endswith(("_endpoint", "_uri")):
            assert urlsplit(url).netloc == urlsplit(ISSUER).netloc, key

    assert client.get(path["jwks_uri"]).status_code == 200
    # The authorization endpoint without parameters: an error page (nothing to redirect to).
    r = client.get(path["authorization_endpoint"])
    assert r.status_code == 400 and r.mimetype == "text/html"
    # Token endpoint: an OAuth error in JSON.
    r = client.post(path["token_endpoint"], data={})
    assert r.status_code == 400 and r.get_json()["error"] == "unsupported_grant_type"
    # Userinfo without a token: a Bearer challenge.
    r = client.get(path["userinfo_endpoint"])
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    # Introspection and revocation demand client authentication.
    for key in ("introspection_endpoint", "revocation_endpoint"):
        r = client.post(path[key], data={"token": "x"})
        assert r.status_code == 401 and r.get_json()["error"] == "invalid_client", key
    # End-session without a session: a page saying so.
    r = client.get(path["end_session_endpoint"])
    assert r.status_code == 200 and r.mimetype == "text/html"


def test_jwks_publishes_public_keys_for_each_algorithm(client, metadata):
    data = client.get(local(metadata["jwks_uri"])).get_json()
    keys = data["keys"]
    assert keys
    by_alg: dict[str, list[dict]] = {}
    for jwk in keys:
        assert not PRIVATE_MEMBERS & set(jwk), f"private material published: {sorted(PRIVATE_MEMBERS & set(jwk))}"
        assert jwk["use"] == "sig"
        assert jwk["kid"]
        by_alg.setdefault(jwk["alg"], []).append(jwk)
    assert set(by_alg) == {"RS256", "ES256", "EdDSA"}
    assert all(k["kty"] == "RSA" for k in by_alg["RS256"])
    assert all(k["kty"] == "EC" and k["crv"] == "P-256" for k in by_alg["ES256"])
    assert all(k["kty"] == "OKP" and k["crv"] == "Ed25519" for k in by_alg["EdDSA"])
    assert len({k["kid"] for k in keys}) == len(keys), "kids must be unique"
    # An independent JOSE library reads the set, and every key is public only.
    keyset = KeySet.import_key_set(data)
    assert all(not k.is_private for k in keyset.keys)
