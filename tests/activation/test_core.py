"""idp.core.activation without HTTP: matching, the secret, the challenge, the limits, the schedule."""
from __future__ import annotations

import datetime as dt

import pytest

from idp.core import activation
from idp.core.passwords import hasher
from idp.extensions import db
from idp.models import Account
from tests.activation.helpers import NEW, OTHER_PESEL, solve, wrong_solution
from tests.factories import PESEL


def _policy(app):
    return app.extensions["idp.policy"]


@pytest.mark.parametrize(("typed", "recorded"), [
    ("zolkiewski", "Żółkiewski"), ("ŻÓŁKIEWSKI", "Żółkiewski"), ("  Żółkiewski ", "Żółkiewski"),
    ("nowak kowalska", "Nowak-Kowalska"), ("NowakKowalska", "Nowak-Kowalska"), ("Lodz", "Łódź"),
    ("oconnor", "O’Connor"), ("Müller", "Muller"), ("ШЕВЧЕНКО", "Шевченко"),
])
def test_surnames_compare_without_case_spaces_and_diacritics(typed, recorded):
    assert activation.fold_surname(typed) == activation.fold_surname(recorded)


@pytest.mark.parametrize(("typed", "recorded"), [("Kowalski", "Kowalska"), ("Zolkiewska", "Żółkiewski")])
def test_different_surnames_differ(typed, recorded):
    assert activation.fold_surname(typed) != activation.fold_surname(recorded)


def test_read_secret_tells_a_pesel_from_a_date():
    assert activation.read_secret(f" {PESEL} ") == activation.Secret("pesel", pesel=PESEL)
    assert activation.read_secret("04231512340") == activation.BAD_PESEL  # check digit
    assert activation.read_secret("123") == activation.BAD_PESEL
    assert activation.read_secret("2000-01-31").birth_date == dt.date(2000, 1, 31)
    assert activation.read_secret("31.01.2000").birth_date == dt.date(2000, 1, 31)
    assert activation.read_secret("2000-02-31") == activation.BAD_SECRET
    assert activation.read_secret("") == activation.BAD_SECRET


def test_verify_matches_all_three_and_records_each_outcome(app, person):
    policy = _policy(app)
    pesel = activation.read_secret(PESEL)
    person.password_hash = None
    db.session.commit()
    ok = activation.verify("12345", pesel, "zolkiewski", policy, client_ip="198.51.100.1")
    assert ok.status == activation.OK and ok.account.id == person.id and ok.event.action == activation.VERIFIED
    for album, secret, surname, wrong in [("12345", pesel, "Kowalski", ["surname"]),
                                          ("12345", activation.read_secret(OTHER_PESEL), "Żółkiewski", ["secret"]),
                                          ("54321", pesel, "Żółkiewski", ["album"]),
                                          ("", pesel, "", ["album"]),
                                          ("12345", activation.read_secret("2004-03-15"), "Żółkiewski", ["secret"])]:
        result = activation.verify(album, secret, surname, policy, client_ip="198.51.100.1")
        assert result.status == activation.MISMATCH and result.account is None
        assert result.event.reason == activation.DATA_MISMATCH and result.event.data["wrong"] == wrong
    person.password_hash = hasher().hash(NEW)
    db.session.commit()
    active = activation.verify("12345", pesel, "Żółkiewski", policy, client_ip=None)
    assert active.status == activation.ALREADY_ACTIVE and active.event.reason == activation.ALREADY_ACTIVE


def test_complete_refuses_an_account_that_got_a_password_meanwhile(app, person):
    person.password_hash = None
    db.session.commit()
    assert person.password_hash is None and person.identifiers  # loaded, as a request loads it
    # Meanwhile someone else (another tab, the helpdesk) sets a password, in their own transaction.
    with db.engine.begin() as other:
        other.execute(db.update(Account).where(Account.id == person.id).values(password_hash="$argon2id$other"))
    with pytest.raises(activation.AlreadyActive):
        activation.complete(person, NEW, _policy(app), client_ip=None)
    db.session.expire_all()
    assert db.session.get(Account, person.id).password_hash == "$argon2id$other"


def test_complete_sets_the_password(app, person):
    person.password_hash = None
    db.session.commit()
    activation.complete(person, NEW, _policy(app), client_ip="198.51.100.1")
    db.session.expire_all()
    account = db.session.get(Account, person.id)
    assert hasher().verify(account.password_hash, NEW) and account.password_temporary is False


def test_leading_zero_bits():
    assert activation.leading_zero_bits(b"\x00\x00\xff") == 16
    assert activation.leading_zero_bits(b"\x00\x01") == 15
    assert activation.leading_zero_bits(b"\x80") == 0
    assert activation.leading_zero_bits(b"\x00\x00") == 16


@pytest.mark.policy(activation__challenge_bits=10)
def test_a_challenge_is_signed_expires_and_is_single_use(app):
    policy = _policy(app)
    challenge = activation.issue_challenge(policy)
    assert challenge.bits == 10
    answer = solve(challenge.token, challenge.bits)
    check = activation.check_challenge(challenge.token, answer, policy)
    assert check.ok and check.nonce
    assert activation.check_challenge(challenge.token, wrong_solution(challenge.token, 10), policy).status == "wrong"
    assert activation.check_challenge(challenge.token, "", policy).status == "missing"
    assert activation.check_challenge("garbage", "1", policy).status == "invalid"
    later = activation.utcnow() + dt.timedelta(seconds=activation.CHALLENGE_SECONDS + 1)
    assert activation.check_challenge(challenge.token, answer, policy, now=later).status == "expired"
    activation.record_refused(activation.CHALLENGE_FAILED, client_ip=None, data={"challenge": check.nonce})
    assert activation.check_challenge(challenge.token, answer, policy).status == "replayed"


def test_a_challenge_easier_than_the_policy_is_refused(app):
    policy = _policy(app)
    easy = activation.issue_challenge(type(policy)(policy.path, {**policy.data, "activation": {
        **policy.data["activation"], "challenge_bits": 8}}))
    assert activation.check_challenge(easy.token, solve(easy.token, 8), policy).status == "weak"


@pytest.mark.policy(activation__free_attempts=2, activation__attempts_per_hour=3)
def test_limits_count_failures_of_one_address_in_the_last_hour(app):
    policy = _policy(app)
    now = activation.utcnow()
    assert activation.limits(policy, client_ip="198.51.100.1") == activation.Limits(0, False, None)
    for minutes in (70, 50, 40):
        activation.record_refused(activation.DATA_MISMATCH, client_ip="198.51.100.1",
                                  now=now - dt.timedelta(minutes=minutes))
    activation.record_refused(activation.RATE_LIMITED, client_ip="198.51.100.1", now=now)  # not an attempt
    activation.record_refused(activation.DATA_MISMATCH, client_ip="198.51.100.2", now=now)
    state = activation.limits(policy, client_ip="198.51.100.1", now=now)
    assert state == activation.Limits(2, True, None)
    activation.record_refused(activation.CHALLENGE_FAILED, client_ip="198.51.100.1", now=now)
    state = activation.limits(policy, client_ip="198.51.100.1", now=now)
    assert state.failures == 3 and state.blocked_until == now - dt.timedelta(minutes=50) + activation.WINDOW
