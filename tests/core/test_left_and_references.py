"""People missing from a later export are marked as left (never deleted) and log in only during the
policy's grace period; every reference code on an error page leads to its event (`idp events show`)."""
import re

import pytest

from idp.cli import main
from idp.core import provisioning
from idp.extensions import db
from idp.models import Account, AuditEvent
from tests.conftest import cas_login
from tests.factories import PASSWORD

HEADER = "album,pesel,first_name,last_name,university_email,private_email,role,aliases,birth_date\n"
ANNA = "20001,,Anna,Nowak,anna.nowak@student.example.edu.pl,,student,,2001-02-03\n"
JAN = "20002,,Jan,Kowal,jan.kowal@student.example.edu.pl,,student,,2001-04-05\n"


def _import(app, text, now=None):
    return provisioning.import_csv((HEADER + text).encode(), "sis.csv", app.config["PESEL_KEY"], now=now)


def _with_password(album):
    from idp.core.passwords import hasher

    account = db.session.scalar(db.select(Account).where(Account.album == album))
    account.password_hash = hasher().hash(PASSWORD)
    db.session.commit()
    return account


def test_missing_from_a_later_export_is_marked_never_deleted(app, clock):
    assert _import(app, ANNA + JAN).added == 2
    result = _import(app, ANNA)
    assert result.left == 1 and result.unchanged == 1
    jan = db.session.scalar(db.select(Account).where(Account.album == "20002"))
    assert jan is not None and jan.left_at is not None  # still there, only marked
    assert _import(app, ANNA).left == 0  # marked once, not again on every import


def test_a_person_who_left_logs_in_during_the_grace_period_only(app, client, clock):
    _import(app, ANNA + JAN)
    _with_password("20002")
    _import(app, ANNA)
    clock.advance(days=29)
    assert cas_login(client, "jan.kowal@student.example.edu.pl", PASSWORD).status_code == 302
    client.get("/cas/logout")
    clock.advance(days=2)  # 31 days after the export that dropped him: the default grace is 30
    wrong = cas_login(client, "jan.kowal@student.example.edu.pl", "not-his-password")
    assert wrong.status_code == 401 and "Niepoprawne dane logowania" in wrong.get_data(as_text=True)
    r = cas_login(client, "jan.kowal@student.example.edu.pl", PASSWORD)
    assert r.status_code == 403  # the right password: told why (the left page), never a ticket
    last = db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == "login.failed")
                              .order_by(AuditEvent.id.desc())).first()
    assert last.reason == "account_left"


@pytest.mark.policy(migration__left_grace_days=0)
def test_an_open_session_ends_when_the_grace_period_is_over(app, client, clock):
    _import(app, ANNA + JAN)
    _with_password("20002")
    assert cas_login(client, "jan.kowal@student.example.edu.pl", PASSWORD).status_code == 302
    _import(app, ANNA)
    clock.advance(seconds=1)
    # the SSO session no longer gives tickets: the login form is shown again
    r = client.get("/cas/login", query_string={"service": "https://usosweb.example.edu.pl/x"})
    assert r.status_code == 200 and 'name="password"' in r.get_data(as_text=True)


def test_back_in_an_export_means_active_again(app, client, clock):
    _import(app, ANNA + JAN)
    _with_password("20002")
    _import(app, ANNA)
    clock.advance(days=40)
    result = _import(app, ANNA + JAN)
    assert result.updated == 1
    assert db.session.scalar(db.select(Account).where(Account.album == "20002")).left_at is None
    assert cas_login(client, "jan.kowal@student.example.edu.pl", PASSWORD).status_code == 302


def test_the_cli_says_how_many_were_marked(app, tmp_path, monkeypatch):
    from click.testing import CliRunner

    monkeypatch.setenv("IDP_INSTANCE", app.instance_path)
    monkeypatch.setenv("IDP_DATABASE_URL", app.config["DATABASE_URL"])
    monkeypatch.setenv("IDP_ARGON2_TIME_COST", "2")
    monkeypatch.setenv("IDP_ARGON2_MEMORY_COST", "19456")
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(HEADER + ANNA + JAN, encoding="utf-8")
    second.write_text(HEADER + ANNA, encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(main, ["users", "import", str(first)]).exit_code == 0
    out = runner.invoke(main, ["users", "import", str(second)])
    assert out.exit_code == 0, out.output
    assert "added 0, updated 0, unchanged 1, rejected 0" in out.output
    assert "marked as left" in out.output and out.output.rstrip().endswith(": 1")


def test_the_reference_code_on_an_error_page_finds_its_event(app, client, monkeypatch):
    from click.testing import CliRunner

    r = client.get("/cas/login", query_string={"service": "https://evil.example.com/"})
    assert r.status_code == 400
    code = re.search(r"\b(E\d+)\b", r.get_data(as_text=True)).group(1)
    monkeypatch.setenv("IDP_INSTANCE", app.instance_path)
    monkeypatch.setenv("IDP_DATABASE_URL", app.config["DATABASE_URL"])
    monkeypatch.setenv("IDP_ARGON2_TIME_COST", "2")
    monkeypatch.setenv("IDP_ARGON2_MEMORY_COST", "19456")
    out = CliRunner().invoke(main, ["events", "show", code.lower()])
    assert out.exit_code == 0, out.output
    assert "cas.login.unknown_service" in out.output and "evil.example.com" in out.output
    missing = CliRunner().invoke(main, ["events", "show", "E999999999"])
    assert missing.exit_code == 1 and "no event" in missing.output


def test_a_form_expired_page_has_a_code_and_a_missing_page_none(app, client):
    assert re.search(r"\bE\d+\b", client.post("/account/password", data={}).get_data(as_text=True))
    page = client.get("/no-such-page").get_data(as_text=True)
    assert not re.search(r"\bE\d+\b", page)


def test_the_not_provisioned_page_code_is_the_event_of_the_refusal(app, client, person):
    from idp.core import audit, registry
    from tests.conftest import SERVICES

    registry.replace_all([dict(s) for s in SERVICES[1:]] + [dict(SERVICES[0], requires_entitlement=True)])
    person.entitlements = ["Moodle"]
    db.session.commit()
    r = cas_login(client, "12345", PASSWORD)
    assert r.status_code == 403
    code = re.search(r"\b(E\d+)\b", r.get_data(as_text=True)).group(1)
    event = audit.find_by_reference(code)
    assert event.action == "cas.login.not_provisioned" and event.account_id == person.id
