"""OIDC signing keys: the file in the instance folder, the JWKS, signing and verifying, rotation."""
from __future__ import annotations

import base64
import json
import stat
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from authlib.integrations.base_client.sync_openid import OpenIDMixin
from joserfc.errors import SecurityWarning

from idp.oidc.keys import (
    ALGORITHMS,
    PRIVATE_FIELDS,
    InvalidClaims,
    InvalidSignature,
    InvalidToken,
    KeyStore,
    KeyStoreError,
    UnknownKey,
)

NOW = datetime(2025, 3, 1, 12, 0, 0)  # naive UTC, as idp.core.clock.utcnow() returns
DAY = timedelta(days=1)
SHAPES = {"RS256": {"kty": "RSA"}, "ES256": {"kty": "EC", "crv": "P-256"}, "EdDSA": {"kty": "OKP", "crv": "Ed25519"}}
ISSUER = "http://127.0.0.1:8000"


@pytest.fixture
def store(tmp_path) -> KeyStore:
    s = KeyStore(tmp_path)
    assert s.ensure(NOW)
    return s


def stored(store: KeyStore) -> dict:
    return json.loads(store.path.read_text())


def header(token: str) -> dict:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def kids(jwks: dict) -> set[str]:
    return {k["kid"] for k in jwks["keys"]}


class RelyingParty(OpenIDMixin):
    """authlib's own OIDC client logic, fed only with our published JWKS (no access to the key file)."""

    client_id = "elearning"

    def __init__(self, jwks: dict):
        self.server_metadata = {"issuer": ISSUER, "jwks": jwks, "id_token_signing_alg_values_supported": ALGORITHMS}

    def load_server_metadata(self):
        return self.server_metadata


def id_token(store: KeyStore, alg: str, nonce: str = "n-0S6_WzA2Mj") -> str:
    now = int(datetime.now(UTC).timestamp())
    return store.sign({"iss": ISSUER, "sub": "s123456", "aud": "elearning", "iat": now, "exp": now + 300,
                       "nonce": nonce}, alg)


def rp_verifies(jwks: dict, token: str) -> dict:
    with warnings.catch_warnings():
        # joserfc's default registry flags "EdDSA" as deprecated (RFC 9864); a relying party sees that warning.
        warnings.simplefilter("ignore", SecurityWarning)
        return dict(RelyingParty(jwks).parse_id_token({"id_token": token}, nonce="n-0S6_WzA2Mj"))


# --- the file -------------------------------------------------------------------------------------------

def test_ensure_twice_creates_once(tmp_path):
    s = KeyStore(tmp_path)
    assert s.ensure(NOW) is True
    content = s.path.read_text()
    assert KeyStore(tmp_path).ensure(NOW + DAY) is False
    assert s.ensure(NOW) is False
    assert s.path.read_text() == content


def test_file_is_private_and_in_the_documented_format(store):
    assert store.path.name == "oidc-keys.json"
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    entries = stored(store)["keys"]
    assert sorted(e["alg"] for e in entries) == sorted(ALGORITHMS)
    for e in entries:
        assert set(e) == {"kid", "alg", "jwk", "created_at", "retire_at", "status"}
        assert e["status"] == "active" and e["retire_at"] is None
        assert datetime.fromisoformat(e["created_at"]) == NOW.replace(tzinfo=UTC)
        assert "d" in e["jwk"]  # the private half lives here, and only here
    assert not [p for p in store.path.parent.iterdir() if p.name.endswith(".tmp")]


def test_kids_are_random_url_safe_and_distinct(tmp_path):
    seen = []
    for n in range(3):
        s = KeyStore(tmp_path / str(n))
        s.ensure(NOW)
        seen += [k.kid for k in s.keys()]
    assert len(set(seen)) == len(seen) == 9
    assert all(len(k) == 16 and k.replace("-", "").replace("_", "").isalnum() for k in seen)


@pytest.mark.parametrize("content, reason", [
    ("{not json", "corrupt key file"),
    ('{"keys": "nope"}', "corrupt key file"),
    ('{"keys": []}', "one active RS256 key"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_corrupt_file_is_a_key_store_error(tmp_path, content, reason):
    path = tmp_path / "oidc-keys.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    s = KeyStore(tmp_path)
    with pytest.raises(KeyStoreError) as exc:
        s.public_jwks(NOW)
    assert str(path) in str(exc.value) and reason in str(exc.value)
    with pytest.raises(KeyStoreError):
        s.ensure(NOW)  # never silently replaced: that would orphan every token signed so far
    assert path.read_bytes() == (content if isinstance(content, bytes) else content.encode())


def test_tampered_entry_names_the_entry(store):
    data = stored(store)
    data["keys"][1]["jwk"] = {"kty": "oct", "k": "AAAA"}
    store.path.write_text(json.dumps(data))
    with pytest.raises(KeyStoreError, match=r"keys\[1\]\.jwk"):
        KeyStore(store.folder).keys()


def test_unreadable_file_is_a_key_store_error(tmp_path):
    (tmp_path / "oidc-keys.json").mkdir()  # unreadable even for root, unlike chmod 0
    with pytest.raises(KeyStoreError, match="cannot read"):
        KeyStore(tmp_path).keys()


def test_no_file_yet_says_run_init(tmp_path):
    with pytest.raises(KeyStoreError, match="idp init"):
        KeyStore(tmp_path).sign({"a": 1})
    with pytest.raises(KeyStoreError, match="idp init"):
        KeyStore(tmp_path).rotate(NOW, DAY)


# --- JWKS -----------------------------------------------------------------------------------------------

def test_jwks_has_three_public_keys(store):
    jwks = store.public_jwks(NOW)
    assert len(jwks["keys"]) == 3
    by_alg = {k["alg"]: k for k in jwks["keys"]}
    assert set(by_alg) == set(ALGORITHMS)
    for alg, shape in SHAPES.items():
        jwk = by_alg[alg]
        assert shape.items() <= jwk.items()
        assert jwk["use"] == "sig" and jwk["kid"]
        assert not PRIVATE_FIELDS & set(jwk)
    assert '"d"' not in json.dumps(jwks)


# --- sign / verify --------------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ALGORITHMS)
def test_sign_verify_round_trip(store, alg):
    token = store.sign({"sub": "s1", "n": 1}, alg, typ="logout+jwt")
    assert store.verify(token, NOW) == {"sub": "s1", "n": 1}
    assert header(token) == {"alg": alg, "kid": store.signing_key(alg).kid, "typ": "logout+jwt"}
    assert header(store.sign({}, alg)) == {"alg": alg, "kid": store.signing_key(alg).kid}


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_relying_party_verifies_with_the_public_jwks_alone(store, alg):
    claims = rp_verifies(store.public_jwks(NOW), id_token(store, alg))
    assert claims["sub"] == "s123456"


def test_default_algorithm_is_rs256(store):
    assert store.signing_key().kid == store.signing_key("RS256").kid
    assert store.signing_key().as_dict(private=False)["kty"] == "RSA"
    with pytest.raises(ValueError, match="HS256"):
        store.signing_key("HS256")


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_bad_signature(store, alg):
    head, body, sig = store.sign({"sub": "s1"}, alg).split(".")
    other = store.sign({"sub": "s2"}, alg).split(".")[1]
    with pytest.raises(InvalidSignature):
        store.verify(f"{head}.{other}.{sig}", NOW)


def test_alg_in_header_must_match_the_key(store):
    token = store.sign({"sub": "s1"}, "RS256")
    forged = base64.urlsafe_b64encode(json.dumps({**header(token), "alg": "ES256"}).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidSignature):
        store.verify(".".join([forged, *token.split(".")[1:]]), NOW)


def test_foreign_kid_and_garbage(store, tmp_path):
    other = KeyStore(tmp_path / "other")
    other.ensure(NOW)
    with pytest.raises(UnknownKey):
        store.verify(other.sign({"sub": "s1"}), NOW)
    with pytest.raises(KeyError):  # UnknownKey is KeyError-like
        store.verify(other.sign({"sub": "s1"}), NOW)
    with pytest.raises(InvalidToken):
        store.verify("not-a-jwt", NOW)


def test_claims_are_checked_only_when_asked(store):
    expired = store.sign({"iss": ISSUER, "exp": int(NOW.replace(tzinfo=UTC).timestamp()) - 60})
    assert store.verify(expired, NOW)["iss"] == ISSUER  # an expired id_token_hint is still ours
    with pytest.raises(InvalidClaims, match="expired"):
        store.verify(expired, NOW, claims_options={})
    later = NOW - timedelta(minutes=5)  # `now` is the caller's, not the wall clock
    assert store.verify(expired, later, claims_options={"iss": {"essential": True, "value": ISSUER}})
    with pytest.raises(InvalidClaims):
        store.verify(expired, later, claims_options={"iss": {"essential": True, "value": "https://evil"}})


# --- rotation -------------------------------------------------------------------------------------------

def test_rotate_publishes_both_generations_and_signs_with_the_new(store):
    old = {alg: store.sign({"sub": alg}, alg) for alg in ALGORITHMS}
    old_kids = kids(store.public_jwks(NOW))
    new = store.rotate(NOW + timedelta(hours=1), DAY)
    assert len(new) == 3 and not set(new) & old_kids
    jwks = store.public_jwks(NOW + timedelta(hours=2))
    assert len(jwks["keys"]) == 6 and kids(jwks) == old_kids | set(new)
    assert [k["kid"] for k in jwks["keys"][:3]] == new  # the signing keys come first
    for alg in ALGORITHMS:
        assert store.signing_key(alg).kid in new
        assert store.verify(old[alg], NOW + timedelta(hours=2)) == {"sub": alg}
        assert rp_verifies(jwks, id_token(store, alg))["sub"] == "s123456"
    entries = {e["kid"]: e for e in stored(store)["keys"]}
    for kid in old_kids:
        assert entries[kid]["status"] == "retiring"
        assert datetime.fromisoformat(entries[kid]["retire_at"]) == (NOW + timedelta(hours=1) + DAY).replace(tzinfo=UTC)


def test_retired_keys_vanish_and_their_tokens_are_unknown(store):
    old_token = store.sign({"sub": "s1"}, "ES256")
    old_kids = kids(store.public_jwks(NOW))
    store.rotate(NOW, DAY)
    after = NOW + DAY  # retire_at has come
    assert not kids(store.public_jwks(after)) & old_kids
    assert len(store.public_jwks(after)["keys"]) == 3
    with pytest.raises(UnknownKey):
        store.verify(old_token, after)
    assert sorted(store.prune(after)) == sorted(old_kids)
    assert store.prune(after) == []
    assert {k.kid for k in store.keys()}.isdisjoint(old_kids)


def test_prune_keeps_keys_before_their_time(store):
    store.rotate(NOW, DAY)
    assert store.prune(NOW + DAY - timedelta(seconds=1)) == []
    assert len(store.keys()) == 6


def test_rotate_drops_retired_keys_and_keeps_retiring_ones(store):
    first = kids(store.public_jwks(NOW))
    second = set(store.rotate(NOW, DAY))
    third = set(store.rotate(NOW + timedelta(hours=1), DAY))  # `first` still retiring, its own retire_at kept
    assert {k.kid for k in store.keys()} == first | second | third
    retire = {k.kid: k.retire_at for k in store.keys()}
    assert {retire[k] for k in first} == {(NOW + DAY).replace(tzinfo=UTC)}
    fourth = set(store.rotate(NOW + 2 * DAY, DAY))  # `first` and `second` are past their time
    assert {k.kid for k in store.keys()} == third | fourth


def test_rotate_requires_a_positive_grace(store):
    with pytest.raises(ValueError):
        store.rotate(NOW, timedelta(0))


def test_a_second_store_sees_a_rotation(store):
    """A running server's KeyStore follows `idp keys rotate` done by another process."""
    server = KeyStore(store.folder)
    before = server.signing_key().kid
    new = store.rotate(NOW, DAY)
    assert server.signing_key().kid in new and server.signing_key().kid != before
