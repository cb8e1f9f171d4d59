"""Brute-force protection in core (idp/core/throttle.py, idp/core/authn.py), with explicit `now=` moments:
growing delays that cap, locks that double and (by policy) become permanent, runs forgotten after
`failure_reset_hours`, blocks per client address with exempt networks — and unknown identifiers treated
exactly like accounts. Every test runs against the SQL store and, when IDP_TEST_REDIS_URL is set, Redis."""
from __future__ import annotations

import datetime as dt
import time

import pytest

from idp.core import authn, helpdesk, linking, throttle
from idp.extensions import db
from idp.models import Account, AuditEvent, PendingLink, ThrottleCounter
from tests.conftest import make_app
from tests.databases import local_redis_url, redis_settings_for
from tests.factories import PASSWORD, create_account

USER = "lukasz.zolkiewski@student.example.edu.pl"
UNKNOWN = "nobody@student.example.edu.pl"
WRONG = "Not-The-Password-123"
T0 = dt.datetime(2026, 1, 15, 13, 20)
IP = "192.0.2.10"
DESK = helpdesk.Actor("hanna.pomocna@example.edu.pl", None, None, "cli")


@pytest.fixture(params=["sql", "redis"])
def app(request, database_url, instance_dir):
    """The app with the SQL store, and again with Redis (every run: CI starts one; see local_redis_url)."""
    if request.param == "redis":
        url = local_redis_url()
        if url is None:
            pytest.fail("no Redis answers (IDP_TEST_REDIS_URL or 127.0.0.1:6379): start it as .ci/run does")
        extra = redis_settings_for(url)
    else:
        extra = {"REDIS_URL": None}
    yield from make_app(request, database_url, instance_dir, extra)


@pytest.fixture
def policy(app):
    return app.extensions["idp.policy"]


def at(seconds: float = 0, **delta) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds, **delta)


def login(policy, identifier: str = USER, password: str = WRONG, *, now: dt.datetime = T0, ip: str | None = IP):
    return authn.authenticate(identifier, password, policy, client_ip=ip, now=now)


def fresh(account: Account) -> Account:
    db.session.expire_all()
    return db.session.get(Account, account.id)


def events(action: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def test_the_store_is_the_one_configured(app):
    expected = throttle.RedisStore if app.config.get("REDIS_URL") else throttle.SqlStore
    assert isinstance(throttle.store(), expected)


# --- delays ---------------------------------------------------------------------------------------------

def test_the_delay_doubles_and_caps(policy):
    # default.toml: after 3 wrong passwords, 2 s doubling up to 60 s
    assert [throttle.delay_seconds(policy, n) for n in range(10)] == [0, 0, 0, 2, 4, 8, 16, 32, 60, 60]
    assert throttle.delay_seconds(policy, 10_000) == 60  # no overflow however long the run


@pytest.mark.policy(login__lockout_threshold=0)
def test_attempts_inside_the_delay_are_refused_without_a_password_check(app, policy, monkeypatch):
    from idp.core.passwords import Passwords

    calls = []
    real = Passwords.verify
    create_account()
    monkeypatch.setattr(Passwords, "verify", lambda self, stored, pw: calls.append(1) or real(self, stored, pw))
    now = T0
    for _ in range(3):
        assert login(policy, now=now).reason == "wrong_password"
    assert len(calls) == 3
    for wait in (2, 4, 8, 16, 32, 60, 60):
        refused = login(policy, USER, PASSWORD, now=now + dt.timedelta(seconds=wait - 1))  # even the right password
        assert (refused.reason, refused.retry_after) == ("throttled", 1)
        assert not refused.ok and refused.throttled and not refused.password_was_correct
        now += dt.timedelta(seconds=wait)
        assert login(policy, now=now).reason == "wrong_password"
    assert len(calls) == 3 + 7  # one verification per attempt let through, none for a refused one
    [first, *_] = events("login.throttled")
    assert (first.reason, first.data["retry_after"], first.client_ip) == ("throttled", 1, IP)
    assert first.account_id is not None


def test_the_right_password_ends_the_delays(app, policy):
    create_account()
    for _ in range(3):
        login(policy)
    assert login(policy, USER, PASSWORD, now=at(1)).reason == "throttled"
    assert login(policy, USER, PASSWORD, now=at(2)).ok
    for _ in range(3):  # a fresh run: three wrong passwords wait for nothing ...
        assert login(policy, now=at(2)).reason == "wrong_password"
    assert login(policy, now=at(2)).reason == "throttled"  # ... and then the delays start again


def test_a_run_older_than_failure_reset_hours_no_longer_counts(app, policy):
    create_account()
    now = T0
    for n in range(5):
        now += dt.timedelta(seconds=throttle.delay_seconds(policy, n))
        assert login(policy, now=now).reason == "wrong_password"
    later = now + dt.timedelta(hours=12)  # failure_reset_hours = 12
    assert login(policy, now=later - dt.timedelta(seconds=1)).reason == "wrong_password"  # still the same run
    assert login(policy, now=later - dt.timedelta(seconds=1)).reason == "throttled"
    much_later = later + dt.timedelta(hours=12)
    for _ in range(3):  # a new run: delays start only after the third again
        assert login(policy, now=much_later).reason == "wrong_password"
    assert login(policy, now=much_later).reason == "throttled"


@pytest.mark.policy(login__delay_after=0)
def test_delay_after_zero_means_no_delays(app, policy):
    for _ in range(20):
        assert login(policy, UNKNOWN).reason == "unknown_identifier"


# --- no oracle -------------------------------------------------------------------------------------------

@pytest.mark.policy(login__lockout_threshold=4)
def test_unknown_identifiers_get_exactly_the_delays_accounts_get(app, policy):
    create_account()
    known, unknown = [], []
    for moment in (0, 0, 0, 1, 2, 6, 7, 14, 30, 30, 61):
        k = login(policy, USER, now=at(moment), ip="192.0.2.1")
        u = login(policy, UNKNOWN, now=at(moment), ip="192.0.2.2")
        known.append((k.throttled, k.retry_after, k.password_was_correct))
        unknown.append((u.throttled, u.retry_after, u.password_was_correct))
    assert known == unknown
    assert any(t for t, _, _ in known)  # some were refused, the same ones
    assert fresh(db.session.scalar(db.select(Account))).locked_until is not None  # the account locked, silently


def test_an_unknown_identifier_is_counted_under_a_keyed_hash(app, policy):
    login(policy, "  Nobody@Student.example.edu.pl ")
    login(policy, UNKNOWN)
    subject = throttle.subject(UNKNOWN)
    assert subject.startswith("name:") and "nobody" not in subject
    assert throttle.store().read([subject])[0].count == 2  # normalised as the lookup normalises
    if isinstance(throttle.store(), throttle.SqlStore):
        assert [k for (k,) in db.session.execute(db.select(ThrottleCounter.key))
                if "nobody" in k] == []


@pytest.mark.policy(login__lockout_threshold=5)
def test_a_delay_on_one_identifier_shows_nothing_on_another_of_the_same_account(app, policy):
    """Driving the album number into a delay must not confirm a guessed e-mail of the same person (a 429
    there would say "same account"): the delay belongs to the typed identifier. The lockout still counts
    the account's wrong passwords whichever identifier was typed, so rotating them escapes no lock."""
    account = create_account()
    for _ in range(3):
        assert login(policy, "12345").reason == "wrong_password"
    assert login(policy, "12345").reason == "throttled"
    for identifier in (USER, "s12345@student.example.edu.pl"):  # same account, same moment: checked, not held
        assert login(policy, identifier).reason == "wrong_password"
    assert login(policy, UNKNOWN).reason == "unknown_identifier"  # just as a stranger's identifier would be
    assert fresh(account).failed_logins == 5 and fresh(account).locked_until == at(minutes=15)  # 3 + 1 + 1
    right = login(policy, USER, PASSWORD)  # the lock is the account's, whichever identifier locked it
    assert right.reason == "locked" and not right.password_was_correct  # audited as right, answered as wrong
    assert throttle.subject("12345") != throttle.subject(USER) and throttle.subject(USER).startswith("name:")


def test_the_helpdesk_sees_and_clears_the_delays_of_every_identifier(app, policy):
    account = create_account()
    for _ in range(3):
        login(policy, "12345")
    for _ in range(4):
        login(policy, "S12345@student.example.edu.pl", now=at(2) if _ == 3 else T0)
    assert throttle.account_delay(account.id, at(2)) == at(6)  # the longest wait of its identifiers
    assert throttle.account_delay(account.id, T0) == at(6)
    throttle.forget_account(account.id)
    db.session.commit()
    assert throttle.account_delay(account.id, T0) is None
    assert login(policy, "12345", PASSWORD).ok and login(policy, "s12345@student.example.edu.pl", PASSWORD).ok


# --- lockout: doubling, permanent, reset ----------------------------------------------------------------

@pytest.mark.policy(login__delay_after=0, login__lockout_threshold=2, login__lockout_minutes=15,
                    login__lockout_max_minutes=40)
def test_each_further_lock_doubles_up_to_the_maximum(app, policy):
    account = create_account()
    now = T0
    for minutes in (15, 30, 40, 40):
        login(policy, now=now)
        login(policy, now=now)
        assert fresh(account).locked_until == now + dt.timedelta(minutes=minutes)
        now = fresh(account).locked_until  # the lock runs out; no correct password in between
    assert fresh(account).lockouts == 4
    assert [e.data["lockouts"] for e in events("account.locked")] == [1, 2, 3, 4]


@pytest.mark.policy(login__delay_after=0, login__lockout_threshold=2, login__lockout_minutes=15)
def test_a_correct_password_ends_the_run_of_locks(app, policy):
    account = create_account()
    login(policy), login(policy)
    now = at(minutes=15)
    assert login(policy, USER, PASSWORD, now=now).ok
    assert fresh(account).lockouts == 0
    login(policy, now=now), login(policy, now=now)
    assert fresh(account).locked_until == now + dt.timedelta(minutes=15)  # back to the first length


@pytest.mark.policy(login__delay_after=0, login__lockout_threshold=2, login__lockout_minutes=15)
def test_the_run_of_locks_is_forgotten_after_failure_reset_hours(app, policy):
    account = create_account()
    login(policy), login(policy)
    now = at(hours=12)
    login(policy, now=now), login(policy, now=now)
    assert fresh(account).locked_until == now + dt.timedelta(minutes=15)
    assert fresh(account).lockouts == 1


@pytest.mark.policy(login__delay_after=0, login__lockout_threshold=2, login__permanent_lockout_after=2,
                    login__lockout_minutes=15, help__contacts=[{"label_pl": "Pomoc", "email": "pomoc@example.edu.pl"}])
def test_permanent_after_n_temporary_locks_until_the_helpdesk_unlocks(app, policy):
    account = create_account()
    now = T0
    for _ in range(2):  # two temporary locks ...
        login(policy, now=now), login(policy, now=now)
        assert fresh(account).locked_until is not None and not fresh(account).locked_permanently
        now = fresh(account).locked_until
    login(policy, now=now), login(policy, now=now)  # ... then the third is for good
    locked = fresh(account)
    assert locked.locked_permanently and locked.locked_until is None and locked.lockouts == 3
    assert events("account.locked")[-1].reason == "too_many_lockouts"
    assert events("account.locked")[-1].data == {"failed_logins": 2, "lockouts": 3, "permanent": True}
    years = now + dt.timedelta(days=400)
    assert login(policy, USER, WRONG, now=years).reason == "locked_wrong_password"  # a guess learns nothing
    right = login(policy, USER, PASSWORD, now=years)
    assert right.reason == "locked_permanently" and not right.password_was_correct
    # A new password does not lift it either; the helpdesk does.
    from idp.core import accounts

    accounts.set_password(account, "Parowóz-Klarnet-Zima-1954", policy, actor="self", now=years)
    assert fresh(account).locked_permanently
    helpdesk.unlock(fresh(account), actor=DESK, reason="phoned, identity checked", now=years)
    unlocked = fresh(account)
    assert (unlocked.locked_permanently, unlocked.lockouts, unlocked.failed_logins) == (False, 0, 0)
    assert login(policy, USER, "Parowóz-Klarnet-Zima-1954", now=years).ok


def test_helpdesk_unlock_clears_the_delay_too(app, policy):
    account = create_account()
    for _ in range(3):
        login(policy)
    assert login(policy, USER, PASSWORD).reason == "throttled"
    view = helpdesk.overview(fresh(account), policy, now=T0)
    assert view.delayed_until == at(2) and view.failed_streak == 3
    helpdesk.unlock(fresh(account), actor=DESK, reason="phoned", now=T0)
    [event] = events("helpdesk.unlock")
    assert event.data["before"]["delayed_until"] == at(2).isoformat(timespec="seconds")
    assert throttle.account_delay(account.id, T0) is None
    assert login(policy, USER, PASSWORD).ok


# --- per client address ---------------------------------------------------------------------------------

@pytest.mark.policy(login__address_failures=5, login__address_window_minutes=10, login__address_block_minutes=10,
                    login__delay_after=0)
def test_an_address_is_blocked_after_wrong_passwords_across_many_identifiers(app, policy):
    create_account()
    for n in range(5):  # password spraying: each identifier tried once
        assert not login(policy, f"guess{n}@student.example.edu.pl", now=at(n)).throttled
    refused = login(policy, USER, PASSWORD, now=at(10))  # the owner, from the same address, waits too
    assert (refused.reason, refused.retry_after) == ("address_blocked", 10 * 60 - 6)
    assert login(policy, USER, PASSWORD, now=at(10), ip="192.0.2.99").ok  # another address does not
    [blocked] = events("address.blocked")
    assert (blocked.client_ip, blocked.reason) == (IP, "too_many_wrong_passwords")
    assert blocked.data == {"until": at(4, minutes=10).isoformat(timespec="seconds"), "failures": 5}
    assert login(policy, USER, PASSWORD, now=at(4, minutes=10)).ok  # the block has run out


@pytest.mark.policy(login__address_failures=5, login__address_window_minutes=10, login__delay_after=0)
def test_the_address_window_is_fixed_from_its_first_failure(app, policy):
    create_account()
    for n in range(4):
        login(policy, UNKNOWN, now=at(n))
    for n in range(4):  # a new window: four more are not five in one window
        login(policy, UNKNOWN, now=at(n, minutes=10))
    assert not login(policy, USER, PASSWORD, now=at(5, minutes=10)).throttled
    assert events("address.blocked") == []


@pytest.mark.policy(login__address_failures=3, login__delay_after=3, login__exempt_networks=["192.0.2.0/24"])
def test_exempt_networks_are_never_blocked_but_keep_the_per_account_delays(app, policy):
    create_account()
    for n in range(10):
        login(policy, f"guess{n}@student.example.edu.pl")
    assert events("address.blocked") == []
    for _ in range(3):
        login(policy)
    assert login(policy, USER, PASSWORD).reason == "throttled"  # the account's own delay still applies
    assert throttle.exempt(policy, "192.0.2.200") and not throttle.exempt(policy, "198.51.100.1")
    assert not throttle.exempt(policy, None) and not throttle.exempt(policy, "not-an-address")


@pytest.mark.policy(login__address_failures=3, login__delay_after=0)
def test_an_ipv6_client_counts_as_its_64(app, policy):
    login(policy, UNKNOWN, ip="2001:db8:0:1::1")
    login(policy, UNKNOWN, ip="2001:db8:0:1::2")
    login(policy, UNKNOWN, ip="2001:db8:0:1:ffff::3")
    assert login(policy, UNKNOWN, ip="2001:db8:0:1::4").reason == "address_blocked"
    assert login(policy, UNKNOWN, ip="2001:db8:0:2::1").reason == "unknown_identifier"
    assert throttle.address_key("::ffff:192.0.2.1") == throttle.address_key("192.0.2.1") == "addr:192.0.2.1"
    assert throttle.address_key(None) is None


@pytest.mark.policy(login__address_failures=0, login__delay_after=0)
def test_address_failures_zero_turns_the_address_rule_off(app, policy):
    for _ in range(50):
        login(policy, UNKNOWN)
    assert login(policy, UNKNOWN).reason == "unknown_identifier"


def test_without_a_client_address_only_the_subject_counts(app, policy):
    for _ in range(3):
        login(policy, UNKNOWN, ip=None)
    assert login(policy, UNKNOWN, ip=None).reason == "throttled"


# --- the other password checks ------------------------------------------------------------------------

def test_verify_known_is_throttled_and_counts(app, policy):
    account = create_account()
    for _ in range(3):
        assert authn.verify_known(account, WRONG, policy, client_ip=IP, now=T0) is False
    with pytest.raises(authn.Throttled) as refused:
        authn.verify_known(account, PASSWORD, policy, client_ip=IP, now=at(1))
    assert (refused.value.reason, refused.value.retry_after) == ("throttled", 1)
    assert fresh(account).failed_logins == 3
    assert authn.verify_known(account, PASSWORD, policy, client_ip=IP, now=at(2)) is True
    assert throttle.account_delay(account.id, at(2)) is None


def test_the_link_proof_is_throttled_and_audited(app, policy):
    account = create_account()
    pending = PendingLink(kind="exists", account_id=account.id, provider="poczta", subject="sub-1", email=USER,
                          created_at=T0, expires_at=at(hours=1))
    db.session.add(pending)
    db.session.commit()
    for _ in range(3):
        assert linking.prove_with_password(pending, WRONG, policy, client_ip=IP, now=T0) is None
    with pytest.raises(authn.Throttled):
        linking.prove_with_password(pending, PASSWORD, policy, client_ip=IP, now=at(1))
    reasons = [e.reason for e in events("upstream.link.failed")]
    assert reasons == ["wrong_password"] * 3 + ["throttled"]
    assert linking.proof_attempts_left(pending) == linking.MAX_PROOF_ATTEMPTS - 3  # a refusal is no guess
    assert linking.prove_with_password(pending, PASSWORD, policy, client_ip=IP, now=at(2)) is not None


def test_a_locked_account_refuses_the_known_password_checks_unchecked(app, policy, monkeypatch):
    from idp.core.passwords import Passwords

    account = create_account()
    account.failed_logins, account.locked_until = 10, at(minutes=15)
    pending = PendingLink(kind="exists", account_id=account.id, provider="poczta", subject="sub-1", email=USER,
                          created_at=T0, expires_at=at(hours=1))
    db.session.add(pending)
    db.session.commit()
    verified = []
    real = Passwords.verify
    monkeypatch.setattr(Passwords, "verify", lambda self, stored, pw: verified.append(pw) or real(self, stored, pw))
    for password in (PASSWORD, WRONG):  # right or wrong: the same refusal, and nothing is tried or counted
        with pytest.raises(authn.Locked) as refused:
            authn.verify_known(account, password, policy, client_ip=IP, now=T0)
        assert refused.value.until == at(minutes=15)
        assert linking.prove_with_password(pending, password, policy, client_ip=IP, now=T0) is None
    assert verified == [] and fresh(account).failed_logins == 10
    assert [e.reason for e in events("upstream.link.failed")] == ["locked_unchecked", "locked_unchecked"]
    account = fresh(account)
    account.locked_until, account.locked_permanently = None, True
    db.session.commit()
    with pytest.raises(authn.Locked) as refused:
        authn.verify_known(account, PASSWORD, policy, client_ip=IP, now=T0)
    assert refused.value.until is None  # until the helpdesk unlocks it
    account = fresh(account)
    account.locked_permanently = False
    db.session.commit()
    assert authn.verify_known(account, PASSWORD, policy, client_ip=IP, now=T0) is True


# --- the stores ------------------------------------------------------------------------------------------

SECOND = dt.timedelta(seconds=1)
HOUR = dt.timedelta(hours=1)


def test_a_claim_counts_and_sets_the_hold_the_next_attempt_waits_for(app):
    s = throttle.store()
    run = throttle.Rule("k", sliding=True, reset=HOUR, keep=HOUR, after=2, wait=2 * SECOND, growth=2, cap=5 * SECOND)
    claims = [(s.claim([run], at(n)), n) for n in (0, 0, 1, 2, 6, 11)]
    assert [(ok, slot.count, slot.until) for (ok, [slot]), _ in claims] == [
        (True, 1, None), (True, 2, at(2)),  # the second attempt holds the third back ...
        (False, 0, at(2)),  # ... which is refused, uncounted ...
        (True, 3, at(6)), (True, 4, at(11)), (True, 5, at(16))]  # ... doubling, capped at 5 s
    assert s.read(["k"])[0].count == 5
    assert s.claim([run], at(16, hours=1))[1][0].count == 1  # an hour after its last attempt: a new run
    s.release("k", None, None)  # a correct password: the run is over
    assert s.read(["k"]) == [None]


def test_a_fixed_window_and_an_uncounted_success(app):
    s = throttle.store()
    window = throttle.Rule("w", sliding=False, reset=HOUR, keep=2 * HOUR, after=3, wait=HOUR, growth=1, cap=HOUR)
    assert [s.claim([window], at(n))[1][0].until for n in range(2)] == [None, None]
    ok, [third] = s.claim([window], at(2))
    assert ok and third.count == 3 and third.until == at(2, hours=1)  # the block, set before the check
    s.release(None, "w", third)  # ... which turned out to be a correct password: un-counted, block lifted
    [w] = s.read(["w"])
    assert (w.count, w.until) == (2, None)
    ok, [again] = s.claim([window], at(3))
    assert ok and again.count == 3 and again.until == at(3, hours=1)
    assert s.claim([window], at(4)) == (False, [throttle.Slot(until=at(3, hours=1))])
    assert s.claim([window], at(3, hours=1))[1][0].count == 1  # a new window: the first attempt an hour ago


def test_a_claim_refused_by_one_key_counts_under_none(app):
    s = throttle.store()
    run = throttle.Rule("subject", sliding=True, reset=HOUR, keep=HOUR, after=5, wait=SECOND, growth=2, cap=HOUR)
    block = throttle.Rule("address", sliding=False, reset=HOUR, keep=HOUR, after=1, wait=HOUR, growth=1, cap=HOUR)
    assert s.claim([block], T0)[0]
    ok, slots = s.claim([run, block], at(1))
    assert not ok and slots == [throttle.Slot(), throttle.Slot(until=at(0, hours=1))]
    assert s.read(["subject"]) == [None]  # both keys, or neither


@pytest.mark.policy(login__lockout_threshold=0)
def test_parallel_attempts_cannot_share_a_window(app, policy, monkeypatch):
    """Eight requests at one moment, each while the others' passwords are still being verified: only the
    three before the first delay get a check, the rest wait — whichever node or thread they reach."""
    import threading

    from idp.core.passwords import Passwords

    create_account()
    real, verified, lock = Passwords.verify, [], threading.Lock()

    def slow_verify(self, stored, pw):
        with lock:
            verified.append(1)
        time.sleep(0.3)  # every request is let in (or not) while the first ones are still verifying
        return real(self, stored, pw)

    monkeypatch.setattr(Passwords, "verify", slow_verify)
    results, start = [], threading.Barrier(8)

    def attempt(n: int):
        with app.app_context():
            start.wait()
            r = authn.authenticate(USER, WRONG, policy, client_ip=f"192.0.2.{n}", now=T0)
            with lock:
                results.append(r.reason)
            db.session.remove()

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["throttled"] * 5 + ["wrong_password"] * 3
    assert len(verified) == 3
    assert login(policy, USER, PASSWORD, now=at(1)).reason == "throttled"  # the hold the third one set
    assert login(policy, USER, PASSWORD, now=at(2)).ok


@pytest.mark.policy(login__address_failures=5, login__delay_after=0)
def test_parallel_attempts_from_one_address_stop_at_its_threshold(app, policy):
    """Direct claims, twelve at once from one address (each a different identifier, as in spraying), none
    of them reported back yet: five are let through, and the block starts with the fifth."""
    import threading

    results, lock, start = [], threading.Lock(), threading.Barrier(12)

    def attempt(n: int):
        with app.app_context():
            start.wait()
            claim = throttle.claim(policy, subject=throttle.subject(f"guess{n}@example.edu.pl"), client_ip=IP, now=T0)
            with lock:
                results.append(claim)
            db.session.remove()

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    taken = [c for c in results if c.refusal is None]
    assert len(results) == 12 and len(taken) == 5
    assert [c.address_blocked_until for c in taken].count(at(minutes=10)) == 1  # exactly one starts the block
    assert {c.refusal.reason for c in results if c.refusal} == {"address_blocked"}


@pytest.mark.parametrize("app", ["sql"], indirect=True)
def test_expired_sql_rows_are_purged(app, policy):
    assert isinstance(throttle.store(), throttle.SqlStore)
    login(policy, UNKNOWN)
    db.session.commit()
    s = throttle.SqlStore()
    assert s.purge(at(minutes=19)) == 0
    assert s.purge(at(minutes=21)) == 1  # the address's window and block (10 + 10 minutes)
    assert s.purge(at(hours=11)) == 0
    assert s.purge(at(hours=13)) == 1  # the identifier's run (failure_reset_hours)
    assert db.session.scalar(db.select(db.func.count()).select_from(ThrottleCounter)) == 0


@pytest.mark.parametrize("app", ["sql"], indirect=True)
def test_the_purge_works_in_batches_of_its_own(app, policy):
    assert isinstance(throttle.store(), throttle.SqlStore)
    for n in range(7):
        login(policy, f"guess{n}@example.edu.pl", ip=None)
    s = throttle.SqlStore()
    assert s.purge(at(hours=13), batch=3, batches=1) == 3  # one transaction of three rows
    assert s.purge(at(hours=13), batch=3) == 4  # then until a batch comes back short
    assert db.session.scalar(db.select(db.func.count()).select_from(ThrottleCounter)) == 0


@pytest.mark.parametrize("app", ["sql"], indirect=True)
def test_a_failing_purge_never_fails_a_login(app, policy, monkeypatch, caplog):
    assert isinstance(throttle.store(), throttle.SqlStore)
    from sqlalchemy.exc import OperationalError

    def broken(self, now, **kw):
        raise OperationalError("DELETE", {}, Exception("deadlock detected"))

    create_account()
    monkeypatch.setattr(throttle, "PURGE_CHANCE", 1.0)
    assert login(policy, USER, PASSWORD).ok  # a real purge after the claim, outside the login's transaction
    monkeypatch.setattr(throttle.SqlStore, "purge", broken)
    assert login(policy, UNKNOWN).reason == "unknown_identifier"
    assert login(policy, USER, PASSWORD).ok
    assert "throttle purge failed" in caplog.text


@pytest.mark.parametrize("app", ["sql"], indirect=True)
def test_a_claim_with_uncommitted_changes_in_the_session(app, policy):
    """A caller that already wrote (uncommitted) in the session: on SQLite the claim then goes into a
    savepoint of that session instead of waiting for it on a second connection (the file's one writer)."""
    assert isinstance(throttle.store(), throttle.SqlStore)
    account = create_account()
    account.first_name = "Ludwik"
    db.session.flush()
    started = time.monotonic()
    for _ in range(3):
        assert authn.verify_known(account, WRONG, policy, client_ip=IP, now=T0) is False
    with pytest.raises(authn.Throttled):
        authn.verify_known(account, PASSWORD, policy, client_ip=IP, now=T0)
    assert time.monotonic() - started < 3
    db.session.commit()
    assert fresh(account).first_name == "Ludwik" and fresh(account).failed_logins == 3


@pytest.mark.parametrize("app", ["redis"], indirect=True)
def test_redis_keys_expire_by_themselves(app, policy):
    assert isinstance(throttle.store(), throttle.RedisStore)
    from idp.extensions import shared

    login(policy, UNKNOWN)
    key = shared.key("throttle", throttle.subject(UNKNOWN))
    assert 11 * 3600 < shared.redis.ttl(key) <= 12 * 3600 + 60
    assert key.startswith(app.config["REDIS_PREFIX"])
