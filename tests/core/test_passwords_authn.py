"""argon2id hashing as typed (NFKC only) and authenticate(): one verification whatever the failure."""
from __future__ import annotations

import argon2
import pytest
import sqlalchemy as sa

from idp import create_app
from idp.config import ConfigError
from idp.core.accounts import find_by_identifier
from idp.core.authn import authenticate
from idp.core.passwords import Passwords, hasher
from idp.extensions import db
from idp.models import Account, AuditEvent
from tests.conftest import CHEAP_ARGON2
from tests.factories import PASSWORD, PESEL, create_account


@pytest.fixture
def verify_calls(monkeypatch):
    """Count argon2 verifications (the expensive step whose presence makes timing uniform)."""
    calls = []
    original = argon2.PasswordHasher.verify

    def counting(self, hash, password):
        calls.append(hash)
        return original(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", counting)
    return calls


def login(identifier, password, app, **kwargs):
    return authenticate(identifier, password, app.extensions["idp.policy"], client_ip="192.0.2.1", **kwargs)


# --- passwords.py ------------------------------------------------------------------------------------

def test_hash_is_argon2id_with_the_configured_cost(app):
    stored = hasher().hash(PASSWORD)
    assert stored.startswith("$argon2id$")
    assert "m=8,t=1,p=1" in stored  # CHEAP_ARGON2 from tests/conftest.py
    assert hasher().verify(stored, PASSWORD)
    assert not hasher().verify(stored, PASSWORD + "x")
    assert hasher().hash(PASSWORD) != stored  # salted


def test_nfkc_normalisation():
    pw = Passwords(1, 8, 1)
    composed = "Zażółć-gęślą-jaźń"
    decomposed = "Zaz\u0307o\u0301\u0142c\u0301-ge\u0328s\u0301la\u0328-jaz\u0301n\u0301"
    assert composed != decomposed
    assert pw.verify(pw.hash(composed), decomposed)
    assert pw.verify(pw.hash(decomposed), composed)
    assert pw.verify(pw.hash("ﬁlm-ｗｉｓｌａ"), "film-wisla")  # ligature and full-width letters


def test_no_truncation():
    pw = Passwords(1, 8, 1)
    long = "".join(chr(ord("a") + i % 26) for i in range(100))
    stored = pw.hash(long)
    assert pw.verify(stored, long)
    assert not pw.verify(stored, long[:99])
    assert not pw.verify(stored, long[:72])  # bcrypt's limit is no limit here
    assert not pw.verify(stored, long + " ")
    stored = pw.hash("x" * 73)
    assert not pw.verify(stored, "x" * 72)


def test_case_and_whitespace_sensitive():
    pw = Passwords(1, 8, 1)
    stored = pw.hash("Korsarz-Wisła")
    assert not pw.verify(stored, "korsarz-wisła")
    assert not pw.verify(stored, "KORSARZ-WISŁA")
    assert not pw.verify(stored, "Korsarz-Wisła ")
    assert not pw.verify(stored, " Korsarz-Wisła")
    assert not pw.verify(stored, "Korsarz-Wisla")  # diacritics are not folded either


def test_missing_or_broken_hash_still_costs_one_verification(verify_calls):
    pw = Passwords(1, 8, 1)
    verify_calls.clear()  # hashing the dummy at construction does not verify
    assert pw.verify(None, "anything") is False
    assert pw.verify(None, "idp-dummy-password-for-unknown-accounts") is False  # the dummy never logs in
    assert pw.verify("", "idp-dummy-password-for-unknown-accounts") is False
    assert len(verify_calls) == 3
    assert pw.verify("not-a-hash", "x") is False
    assert pw.verify("$argon2id$v=19$m=8,t=1,p=1$garbage", "x") is False


def test_needs_rehash():
    cheap, dearer = Passwords(1, 8, 1), Passwords(2, 16, 1)
    stored = cheap.hash("Korsarz-Wisła")
    assert not cheap.needs_rehash(stored)
    assert dearer.needs_rehash(stored)
    assert dearer.needs_rehash("garbage")


# --- authenticate ------------------------------------------------------------------------------------

def test_success_with_any_allowed_identifier(app, person):
    for typed in ("lukasz.zolkiewski@student.example.edu.pl", "LUKASZ.Zolkiewski@Student.Example.EDU.PL",
                  "  s12345@student.example.edu.pl ", "12345"):
        result = login(typed, PASSWORD, app)
        assert result.ok, typed
        assert result.account.id == person.id


def test_an_empty_stored_hash_is_no_password(app, person, verify_calls):
    person.password_hash = ""
    db.session.commit()
    verify_calls.clear()
    result = login("12345", "idp-dummy-password-for-unknown-accounts", app)
    assert result.reason == "no_password"
    assert len(verify_calls) == 1


def test_password_is_checked_exactly(app, person):
    assert not login("12345", PASSWORD.lower(), app).ok
    assert not login("12345", PASSWORD.upper(), app).ok
    assert not login("12345", PASSWORD + " ", app).ok
    assert not login("12345", PASSWORD[:-1], app).ok


@pytest.mark.parametrize("case", ["unknown", "wrong", "no_password", "left", "ok"])
def test_exactly_one_verification_whatever_the_outcome(app, verify_calls, case):
    if case != "unknown":
        create_account(password=None if case == "no_password" else PASSWORD,
                       status="left" if case == "left" else "active")
    verify_calls.clear()
    result = login("nobody@example.edu.pl" if case == "unknown" else "s12345@student.example.edu.pl",
                   "wrong-password-123" if case == "wrong" else PASSWORD, app)
    assert len(verify_calls) == 1
    expected = {"unknown": "unknown_identifier", "wrong": "wrong_password", "no_password": "no_password",
                "left": "account_left", "ok": None}[case]
    assert result.reason == expected
    assert result.ok is (case == "ok")
    if case == "unknown":
        assert result.account is None


def test_unknown_and_wrong_password_look_alike_to_the_caller(app, person, verify_calls):
    unknown = login("nikt@student.example.edu.pl", PASSWORD, app)
    wrong = login("s12345@student.example.edu.pl", "Zle-haslo-zupelnie-inne", app)
    assert not unknown.ok and not wrong.ok
    assert (unknown.reason, wrong.reason) == ("unknown_identifier", "wrong_password")
    # both spent a full argon2 verification with the same cost parameters
    assert len(verify_calls) == 2
    params = [h.split("$")[3] for h in verify_calls]
    assert params[0] == params[1]


def test_failures_and_success_are_audited(app, person):
    login("nikt@example.edu.pl", "x", app)
    login("12345", "x", app)
    login("12345", PASSWORD, app, service="https://usosweb.example.edu.pl/")
    events = list(db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id)))
    assert [(e.action, e.reason) for e in events] == [
        ("login.failed", "unknown_identifier"), ("login.failed", "wrong_password"), ("login.succeeded", None)]
    assert events[0].data["identifier"] == "nikt@example.edu.pl"
    assert events[0].client_ip == "192.0.2.1"
    assert events[1].account_id == person.id
    assert events[2].data["service"] == "https://usosweb.example.edu.pl/"


def test_a_pesel_typed_as_login_is_not_stored(app, person):
    assert login(PESEL, PASSWORD, app).reason == "unknown_identifier"
    assert login(f" {PESEL} ", PASSWORD, app).reason == "unknown_identifier"
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                assert not any(PESEL in str(v) for v in row), table.name


@pytest.mark.policy(login__identifiers=["university_email"])
def test_identifier_kinds_the_policy_does_not_allow(app, person, verify_calls):
    assert login("lukasz.zolkiewski@student.example.edu.pl", PASSWORD, app).ok
    for typed in ("12345", "s12345@student.example.edu.pl", "lukasz.z@example.com"):
        verify_calls.clear()
        result = login(typed, PASSWORD, app)
        assert result.reason == "unknown_identifier", typed
        assert len(verify_calls) == 1
    assert find_by_identifier("", app.extensions["idp.policy"]) is None


def test_rehash_on_login_when_parameters_change(app, database_url, instance_dir, person):
    old = person.password_hash
    assert "m=8,t=1,p=1" in old
    dearer = create_app({"TESTING": True, "DATABASE_URL": database_url, "ARGON2_TIME_COST": 2,
                         "ARGON2_MEMORY_COST": 16, "ARGON2_PARALLELISM": 1}, instance=instance_dir)
    with dearer.app_context():
        policy = dearer.extensions["idp.policy"]
        try:
            # a wrong password never rewrites the hash
            assert not authenticate("12345", "wrong-password", policy, client_ip=None).ok
            assert db.session.get(Account, person.id).password_hash == old
            assert authenticate("12345", PASSWORD, policy, client_ip=None).ok
            new = db.session.get(Account, person.id).password_hash
            assert new != old and new.startswith("$argon2id$") and "m=16,t=2,p=1" in new
            # the new hash still holds the same password, and a second login does not rehash again
            assert authenticate("12345", PASSWORD, policy, client_ip=None).ok
            assert db.session.get(Account, person.id).password_hash == new
        finally:
            db.session.remove()
            db.engine.dispose()
    db.session.expire_all()
    stored = db.session.get(Account, person.id).password_hash
    assert "m=16,t=2,p=1" in stored
    # the original (cheap) app still verifies the rehashed password: parameters live in the hash
    assert login("12345", PASSWORD, app).ok


def test_config_floor_outside_tests(database_url, tmp_path):
    base = {"DATABASE_URL": database_url}
    for key, value in (("ARGON2_MEMORY_COST", 19455), ("ARGON2_TIME_COST", 1), ("ARGON2_PARALLELISM", 0)):
        with pytest.raises(ConfigError, match=key):
            create_app({**base, key: value}, instance=tmp_path / "instance")
    create_app({**base, "ARGON2_TIME_COST": 2, "ARGON2_MEMORY_COST": 19456, "ARGON2_PARALLELISM": 1},
               instance=tmp_path / "instance")
    # TESTING lifts the floor, which is how this suite stays fast
    create_app({**base, "TESTING": True, **CHEAP_ARGON2}, instance=tmp_path / "instance")


def test_config_floor_applies_to_the_environment(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("IDP_ARGON2_MEMORY_COST", "8192")
    with pytest.raises(ConfigError, match="ARGON2_MEMORY_COST"):
        create_app({"DATABASE_URL": database_url}, instance=tmp_path / "instance")
