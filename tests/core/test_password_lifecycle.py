"""set_password and what surrounds the rule engine: the person's data, history against argon2 hashes,
the side effects of a change (other sessions end, refresh tokens revoked, audit), maximum age and the
required action it triggers. Runs on SQLite and PostgreSQL (IDP_TEST_DATABASE_URL)."""
from __future__ import annotations

import datetime as dt
import json
import secrets

import argon2
import pytest
import sqlalchemy as sa
from flask_babel import force_locale

from idp.core import accounts, sso
from idp.core.accounts import PasswordRejected, password_expired, person_data, set_password, verify_password
from idp.core.clock import utcnow
from idp.core.passwords import hasher
from idp.core.pesel import keyed_hash
from idp.extensions import db
from idp.models import Account, AuditEvent, OAuthToken, PasswordHistory, SsoSession
from tests.factories import PASSWORD, PESEL, create_account

#: Strong, distinct, and free of Łukasz Żółkiewski's data (tests/factories.py).
P1, P2, P3, P4 = ("Wiatrak-Pomidor-Latarnia-42", "Kominek-Parasol-Ogórek-17", "Żaglówka-Marchew-Dzwon-58",
                  "Sowa-Lokomotywa-Bursztyn-33")


def policy(app):
    return app.extensions["idp.policy"]


def reload(account: Account) -> Account:
    db.session.expire_all()
    return db.session.get(Account, account.id)


def rejected(app, account, password, **kwargs) -> list[str]:
    with pytest.raises(PasswordRejected) as info:
        set_password(account, password, policy(app), **kwargs)
    return [v.code for v in info.value.violations]


def history_rows(account) -> list[PasswordHistory]:
    return list(db.session.scalars(sa.select(PasswordHistory).where(PasswordHistory.account_id == account.id)
                                   .order_by(PasswordHistory.id)))


def events(action: str | None = None) -> list[AuditEvent]:
    query = sa.select(AuditEvent).order_by(AuditEvent.id)
    if action:
        query = query.where(AuditEvent.action == action)
    return list(db.session.scalars(query))


@pytest.fixture
def verify_calls(monkeypatch):
    """Every argon2 verification, counted at the library (the expensive step)."""
    calls = []
    original = argon2.PasswordHasher.verify

    def counting(self, hash, password):
        calls.append(hash)
        return original(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", counting)
    return calls


def test_the_examples_are_acceptable(app, person):
    for password in (P1, P2, P3, P4):
        assert accounts.evaluate_password(person, password, policy(app)).ok, password
    # the current password is acceptable only where a change need not change it (staff setting one)
    assert accounts.evaluate_password(person, PASSWORD, policy(app), forbid_current=False).ok
    assert not accounts.evaluate_password(person, PASSWORD, policy(app)).ok


# --- the person's data ---------------------------------------------------------------------------------

def test_person_data_of_an_account_carries_no_pesel_only_its_keyed_hash(app, person):
    data = person_data(person)
    assert (data.first_name, data.last_name, data.album) == ("Łukasz", "Żółkiewski", "12345")
    assert set(data.identifiers) == {"lukasz.zolkiewski@student.example.edu.pl", "lukasz.z@example.com",
                                     "s12345@student.example.edu.pl"}
    assert data.birth_date == "2004-03-15"
    assert data.pesel == "" and PESEL not in repr(data)
    assert data.pesel_hash == keyed_hash(PESEL, app.config["PESEL_KEY"])
    assert data.pesel_key == app.config["PESEL_KEY"]
    assert person_data(person, pesel=PESEL).pesel == PESEL  # typed on the reset page


@pytest.mark.parametrize("password", [
    f"Wiatrak-Pomidor-{PESEL}", f"Wiatrak-{PESEL[:6]} {PESEL[6:]}-Pomidor", f"x{PESEL}Wiatrak-Pomidor",
    "Wiatrak-Pomidor-15.03.2004", "Wiatrak-Pomidor-2004-03-15", "Wiatrak-Pomidor-150304",
    "Łukasz-Wiatrak-Pomidor-9", "ZOLKIEWSKI-wiatrak-pomidor", "Wiatrak-Pomidor-s12345",
])
def test_set_password_refuses_the_persons_own_data(app, person, password):
    assert rejected(app, person, password) == ["personal_data"]
    assert rejected(app, person, password, pesel=PESEL) == ["personal_data"]


def test_a_pesel_is_found_through_the_stored_hash_without_being_typed(app):
    account = create_account()
    assert accounts.evaluate_password(account, f"Wiatrak-Pomidor-{PESEL}", policy(app)).violations[0].code == (
        "personal_data")
    no_pesel = create_account(album="777", university_email="a.b@student.example.edu.pl", private_email=None,
                              aliases=(), pesel=None)
    assert accounts.evaluate_password(no_pesel, f"Wiatrak-Pomidor-{PESEL}", policy(app)).ok


# --- history -------------------------------------------------------------------------------------------

@pytest.mark.policy(password__history=3)
def test_history_three_refuses_the_current_and_two_previous(app, person):
    for password in (P1, P2, P3):
        set_password(person, password, policy(app))
    # current P3, then P2, P1, then the factory's PASSWORD (fourth-oldest)
    for password in (P3, P2, P1):
        assert rejected(app, person, password) == ["reused"], password
    assert verify_password(reload(person), P3)
    set_password(person, PASSWORD, policy(app))
    assert verify_password(reload(person), PASSWORD)


@pytest.mark.policy(password__history=3)
def test_history_compares_the_nfkc_form(app, person):
    set_password(person, P1, policy(app))
    fullwidth = "Ｗｉａｔｒａｋ-Ｐｏｍｉｄｏｒ-Ｌａｔａｒｎｉａ-４２"
    assert rejected(app, person, fullwidth) == ["reused"]
    set_password(person, "Deﬁlada-Pomidor-Latarnia-42", policy(app))  # "ﬁ" ligature
    assert rejected(app, person, "Defilada-Pomidor-Latarnia-42") == ["reused"]


@pytest.mark.policy(password__history=1)
def test_history_one_is_the_current_password_only(app, person):
    assert rejected(app, person, PASSWORD) == ["reused"]
    set_password(person, P1, policy(app))
    set_password(person, PASSWORD, policy(app))


def test_history_zero_has_no_reuse_rule(app, person):
    """NIST: no reuse rule by default; the same password may be set again by the helpdesk or the CLI."""
    assert "reused" not in [r.code for r in accounts.evaluate_password(person, "", policy(app)).rules]
    set_password(person, PASSWORD, policy(app), actor="cli")
    assert verify_password(reload(person), PASSWORD)


def test_history_zero_still_refuses_the_same_password_on_a_change(app):
    """The first-login change of a temporary password (forbid_current) must produce a new password."""
    account = create_account(temporary=True)
    assert rejected(app, account, PASSWORD, forbid_current=True) == ["same_as_current"]
    assert rejected(app, account, "Ｋｏｒｓａｒｚ-Wisła-1987-Tramwaj", forbid_current=True) == ["same_as_current"]
    assert reload(account).password_temporary is True
    set_password(account, P1, policy(app), forbid_current=True)
    account = reload(account)
    assert account.password_temporary is False and verify_password(account, P1)


def test_same_as_current_is_checked_last_like_the_history(app):
    # the comparison costs an argon2 verification: it runs only when every other rule passes
    account = create_account(password="Łukasz-Wiatrak-Pomidor-9")  # set before the rules existed
    assert rejected(app, account, "Łukasz-Wiatrak-Pomidor-9", forbid_current=True) == ["personal_data"]
    other = create_account(album="55555", university_email="x.y@student.example.edu.pl", private_email=None,
                           aliases=(), password="Wiatrak-Kangur-Pomidor-Latarnia-7")
    assert rejected(app, other, "Wiatrak-Kangur-Pomidor-Latarnia-7", forbid_current=True) == ["same_as_current"]


@pytest.mark.policy(password__history=3)
def test_same_as_current_is_not_repeated_when_the_history_already_says_so(app, person):
    assert rejected(app, person, PASSWORD, forbid_current=True) == ["reused"]


def test_same_as_current_message(app):
    account = create_account(temporary=True)
    with pytest.raises(PasswordRejected) as info:
        set_password(account, PASSWORD, policy(app), forbid_current=True)
    [violation] = info.value.violations
    with force_locale("en"):
        assert str(violation.message) == "The new password must differ from the current one."
    with force_locale("pl"):
        assert str(violation.message) == "Nowe hasło musi być inne niż obecne."


@pytest.mark.policy(password__history=3)
def test_history_rows_hold_the_replaced_hashes(app, person):
    first_hash = person.password_hash
    now = utcnow().replace(microsecond=0)
    set_password(person, P1, policy(app), now=now)
    [row] = history_rows(person)
    assert row.password_hash == first_hash and row.replaced_at == now
    assert hasher().verify(row.password_hash, PASSWORD)


@pytest.mark.policy(password__history=3)
def test_history_rows_are_trimmed(app, person):
    """At most 24 replaced hashes are kept (the deepest history a policy may ask for)."""
    passwords = [f"Kominek-Parasol-Ogórek-{n}" for n in range(60, 86)]
    for password in passwords:
        set_password(person, password, policy(app))
    rows = history_rows(person)
    assert len(rows) == 24
    # the newest are kept: the 24 passwords before the current one; the oldest two are gone
    assert hasher().verify(rows[-1].password_hash, passwords[-2])
    assert hasher().verify(rows[0].password_hash, passwords[1])
    assert not any(hasher().verify(r.password_hash, PASSWORD) for r in rows)
    assert not any(hasher().verify(r.password_hash, passwords[0]) for r in rows)
    other = create_account(album="99999", university_email="jan.nowak@student.example.edu.pl",
                           private_email=None, aliases=())
    set_password(other, P1, policy(app))
    assert len(history_rows(other)) == 1 and len(history_rows(person)) == 24  # per account


@pytest.mark.policy(password__history=3)
def test_the_history_check_runs_only_when_every_other_rule_passes(app, person, verify_calls):
    set_password(person, P1, policy(app))
    set_password(person, P2, policy(app))  # current P2; history P1, PASSWORD
    for weak in ("kot", "Łukasz-Wiatrak-Pomidor-9", "Wiatrak-Usos-Pomidor-9", "aaaaaaaaaaaaaaaaaaaa", "x" * 500):
        verify_calls.clear()
        codes = rejected(app, person, weak)
        assert "reused" not in codes and verify_calls == [], weak
        verify_calls.clear()
        assert not accounts.evaluate_password(person, weak, policy(app)).ok
        assert verify_calls == []
    verify_calls.clear()
    set_password(person, P3, policy(app))
    assert len(verify_calls) == 3  # the current one and the two previous, each compared once
    verify_calls.clear()
    assert rejected(app, person, P3) == ["reused"]
    assert len(verify_calls) == 1  # stops at the first match


def test_no_history_comparisons_without_a_history_rule(app, person, verify_calls):
    verify_calls.clear()
    set_password(person, P1, policy(app))
    assert verify_calls == []
    set_password(person, P2, policy(app), forbid_current=True)
    assert len(verify_calls) == 1  # forbid_current: the current password only


# --- NFKC and no truncation through set_password -------------------------------------------------------

def test_a_password_set_in_compatibility_characters_verifies_in_plain_ones(app, person):
    set_password(person, "Ｗｉａｔｒａｋ-Ｐｏｍｉｄｏｒ-Ｌａｔａｒｎｉａ-４２", policy(app))
    person = reload(person)
    assert verify_password(person, P1)
    assert verify_password(person, "Ｗｉａｔｒａｋ-Ｐｏｍｉｄｏｒ-Ｌａｔａｒｎｉａ-４２")
    assert not verify_password(person, P1.lower())
    set_password(person, "Deﬁlada-Pomidor-Latarnia-42", policy(app))
    assert verify_password(reload(person), "Defilada-Pomidor-Latarnia-42")


@pytest.mark.policy(password__max_length=256)
def test_a_long_password_is_never_truncated(app, person):
    long = ("Wiatrak-Pomidor-Latarnia-Kominek-Parasol-" * 5)[:200]
    assert len(long) == 200
    set_password(person, long, policy(app))
    person = reload(person)
    assert verify_password(person, long)
    assert not verify_password(person, long[:199])
    assert not verify_password(person, long[:72])
    assert not verify_password(person, long[:64])  # zxcvbn's prefix is not what is stored
    assert not verify_password(person, long + "x")


def test_over_the_maximum_is_refused_before_hashing(app, person, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("must not hash over-long input")

    monkeypatch.setattr(type(hasher()), "hash", boom)
    assert rejected(app, person, "x" * 129) == ["too_long"]
    assert rejected(app, person, "Łukasz" * 100_000) == ["too_long"]


# --- what a change does --------------------------------------------------------------------------------

def _token(account: Account, session: SsoSession | None, *, refresh: bool) -> OAuthToken:
    now = utcnow()
    token = OAuthToken(client_id="elearning", account_id=account.id, session_id=session.id if session else None,
                       access_token_hash=secrets.token_hex(32),
                       refresh_token_hash=secrets.token_hex(32) if refresh else None, scope="openid",
                       issued_at=now, access_expires_at=now + dt.timedelta(hours=1),
                       refresh_expires_at=now + dt.timedelta(days=30) if refresh else None,
                       family=secrets.token_hex(8))
    db.session.add(token)
    db.session.commit()
    return token


def _other_person():
    return create_account(album="99999", first_name="Jan", last_name="Nowak",
                          university_email="jan.nowak@student.example.edu.pl", private_email="jn@example.com",
                          aliases=("s99999@student.example.edu.pl",), pesel=None)


def _start(app, account) -> SsoSession:
    return sso.start(account, policy(app), warn=False, client_ip="192.0.2.1").session


def test_a_change_ends_every_other_session_and_revokes_refresh_tokens(app, person):
    s1, keep, s3 = (_start(app, person) for _ in range(3))
    other = _other_person()
    other_session = _start(app, other)
    tokens = {
        "other_session_refresh": _token(person, s1, refresh=True),
        "kept_session_refresh": _token(person, keep, refresh=True),
        "kept_session_access": _token(person, keep, refresh=False),
        "sessionless_refresh": _token(person, None, refresh=True),
        "ended_session_access": _token(person, s3, refresh=False),
        "other_person": _token(other, other_session, refresh=True),
    }
    ids = {name: t.id for name, t in tokens.items()}
    set_password(person, P1, policy(app), keep_session=keep)
    db.session.expire_all()

    sessions = {s.id: s for s in db.session.scalars(sa.select(SsoSession))}
    assert sessions[keep.id].ended_at is None
    assert sessions[other_session.id].ended_at is None
    for ended in (s1, s3):
        assert sessions[ended.id].ended_at is not None
        assert sessions[ended.id].end_reason == "password_changed"

    revoked = {name: db.session.get(OAuthToken, i).revoked_at is not None for name, i in ids.items()}
    assert revoked == {"other_session_refresh": True, "kept_session_refresh": True, "kept_session_access": False,
                       "sessionless_refresh": True, "ended_session_access": True, "other_person": False}


def test_without_a_session_to_keep_every_session_ends(app, person):
    """The helpdesk, the CLI and the first-login change keep nothing."""
    started = [sso.start(person, policy(app), warn=False, client_ip=None) for _ in range(2)]
    set_password(person, P1, policy(app), actor="cli")
    db.session.expire_all()
    assert all(db.session.get(SsoSession, s.session.id).ended_at is not None for s in started)
    assert all(sso.find(s.tgt, policy(app)) is None for s in started)  # the cookies are worthless


def test_the_kept_session_still_works(app, person):
    kept = sso.start(person, policy(app), warn=False, client_ip=None)
    gone = sso.start(person, policy(app), warn=False, client_ip=None)
    set_password(person, P1, policy(app), keep_session=kept.session)
    assert sso.find(kept.tgt, policy(app)) is not None
    assert sso.find(gone.tgt, policy(app)) is None


def test_audit_events_of_a_change(app, person):
    _start(app, person)
    _start(app, person)
    set_password(person, P1, policy(app))
    [event] = events("password.set")
    assert (event.actor, event.account_id, event.reason) == ("self", person.id, None)
    ended = events("sso.ended")
    assert len(ended) == 2 and {e.reason for e in ended} == {"password_changed"}
    set_password(person, P2, policy(app), temporary=True, actor="cli")
    assert [(e.actor, e.reason) for e in events("password.set")] == [("self", None), ("cli", "temporary")]
    assert reload(person).password_temporary is True


def test_audit_event_of_a_refusal_names_every_broken_rule(app, person):
    rejected(app, person, "łukasz")
    [event] = events("password.rejected")
    assert event.account_id == person.id and event.actor == "self"
    assert event.reason == "too_short"
    assert event.data == {"rules": ["too_short", "personal_data", "weak"]}
    assert events("password.set") == []


def test_no_password_or_pesel_reaches_the_audit_trail(app, person):
    rejected(app, person, f"Wiatrak-Pomidor-{PESEL}", pesel=PESEL)
    rejected(app, person, "kochanie2024")
    set_password(person, P1, policy(app))
    with db.engine.connect() as conn:
        for row in conn.execute(sa.select(AuditEvent.__table__)):
            text = json.dumps([str(v) for v in row], ensure_ascii=False)
            for secret in (P1, PESEL, "kochanie2024", PASSWORD):
                assert secret not in text


def test_a_refusal_changes_nothing(app, person):
    started = sso.start(person, policy(app), warn=False, client_ip=None)
    token = _token(person, started.session, refresh=True)
    before = (person.password_hash, person.password_changed_at, person.password_temporary)
    with pytest.raises(PasswordRejected) as info:
        set_password(person, "kot", policy(app))
    assert [v.code for v in info.value.violations] == ["too_short", "weak"]
    assert "15" in str(info.value)  # every message, joined
    person = reload(person)
    assert (person.password_hash, person.password_changed_at, person.password_temporary) == before
    assert history_rows(person) == []
    assert sso.find(started.tgt, policy(app)) is not None
    assert db.session.get(OAuthToken, token.id).revoked_at is None


def test_a_change_records_when_and_clears_the_temporary_flag(app):
    account = create_account(temporary=True)
    now = (utcnow() + dt.timedelta(days=3)).replace(microsecond=0)
    set_password(account, P1, policy(app), now=now)
    account = reload(account)
    assert account.password_changed_at == now and account.updated_at == now
    assert account.password_temporary is False


# --- maximum age ---------------------------------------------------------------------------------------

def _age(account: Account, days: float) -> Account:
    account.password_changed_at = utcnow() - dt.timedelta(days=days)
    db.session.commit()
    return reload(account)  # read back from the database (naive UTC on both engines)


@pytest.mark.policy(password__max_age_days=90)
def test_a_password_older_than_the_maximum_age_has_expired(app, person):
    assert password_expired(_age(person, 91), policy(app)) is True
    assert password_expired(_age(person, 89), policy(app)) is False
    assert password_expired(_age(person, 0), policy(app)) is False


@pytest.mark.policy(password__max_age_days=90)
def test_maximum_age_boundary(app, person):
    changed = dt.datetime(2025, 1, 1, 12, 0, 0)
    person.password_changed_at = changed
    db.session.commit()
    day90 = changed + dt.timedelta(days=90)
    assert password_expired(person, policy(app), now=day90) is False
    assert password_expired(person, policy(app), now=day90 + dt.timedelta(seconds=1)) is True


@pytest.mark.policy(password__max_age_days=90)
def test_a_change_renews_an_expired_password(app, person):
    person = _age(person, 200)
    assert password_expired(person, policy(app))
    set_password(person, P1, policy(app))
    assert not password_expired(reload(person), policy(app))


@pytest.mark.policy(password__max_age_days=90)
def test_no_change_date_never_expires(app, person):
    person.password_changed_at = None
    db.session.commit()
    assert password_expired(reload(person), policy(app)) is False


def test_no_maximum_age_by_default(app, person):
    """NIST SP 800-63B-4: no periodic expiry."""
    assert policy(app).data["password"]["max_age_days"] == 0
    assert password_expired(_age(person, 3650), policy(app)) is False


@pytest.mark.policy(password__max_age_days=90)
def test_needs_required_action_for_temporary_or_expired(app, person):
    from idp.http.authflow import needs_required_action

    temporary = create_account(album="99999", university_email="jan.nowak@student.example.edu.pl",
                               private_email=None, aliases=(), temporary=True)
    with app.test_request_context("/cas/login"):
        assert needs_required_action(person) is False
        assert needs_required_action(temporary) is True
        assert needs_required_action(_age(person, 91)) is True
        assert needs_required_action(_age(temporary, 91)) is True
        set_password(person, P1, policy(app))
        assert needs_required_action(reload(person)) is False


def test_needs_required_action_without_a_maximum_age(app, person):
    from idp.http.authflow import needs_required_action

    with app.test_request_context("/cas/login"):
        assert needs_required_action(_age(person, 3650)) is False
        person.password_temporary = True
        db.session.commit()
        assert needs_required_action(reload(person)) is True
