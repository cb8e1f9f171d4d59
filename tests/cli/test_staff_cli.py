"""`idp staff`: console roles and admin API tokens, as an operator uses them (DESIGN.md §2)."""
from __future__ import annotations

import sqlalchemy as sa

from idp.core import staff
from idp.models import Account, ApiToken, AuditEvent, StaffRole
from tests.cli.test_cli import database, write_csv
from tests.core.helpers import person


def _people(ready, tmp_path):
    rows = [person(1), person(2, first_name="Anna", last_name="Kowalska")]
    result = ready.invoke("users", "import", str(write_csv(tmp_path / "people.csv", rows)))
    assert result.exit_code == 0, result.output
    return ready


def _roles(instance, album: str) -> list[str]:
    with database(instance) as session:
        account = session.scalar(sa.select(Account).where(Account.album == album))
        return sorted(session.scalars(sa.select(StaffRole.role).where(StaffRole.account_id == account.id)))


def test_grant_by_album_and_by_address_then_list(ready, tmp_path):
    people = _people(ready, tmp_path)
    result = people.run("staff", "grant", "1001", "helpdesk")
    assert result.returncode == 0, result.stderr
    assert "granted helpdesk" in result.stdout
    address = person(2)["university_email"]
    assert people.invoke("staff", "grant", address.upper(), "admin").exit_code == 0
    assert _roles(people, "1001") == ["helpdesk"]
    assert _roles(people, "1002") == ["admin"]
    again = people.invoke("staff", "grant", "1001", "helpdesk")
    assert again.exit_code == 0 and "already has helpdesk" in again.stdout
    listing = people.invoke("staff", "list").stdout
    assert "1001" in listing and "helpdesk" in listing and "Anna Kowalska" in listing and "admin" in listing
    with database(people) as session:
        events = session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "staff.role.granted")).all()
        assert [(e.actor, e.data["role"]) for e in events] == [("cli", "helpdesk"), ("cli", "admin")]


def test_unknown_person_and_unknown_role(ready, tmp_path):
    people = _people(ready, tmp_path)
    result = people.run("staff", "grant", "nobody@example.com", "helpdesk")
    assert result.returncode == 1
    assert result.stderr.strip() == "idp: no person with the identifier 'nobody@example.com'"
    result = people.run("staff", "grant", "1001", "superuser")
    assert result.returncode == 2
    assert "superuser" in result.stderr


def test_revoke_takes_the_role_and_the_tokens_with_it(ready, tmp_path):
    people = _people(ready, tmp_path)
    assert people.invoke("staff", "grant", "1001", "helpdesk").exit_code == 0
    made = people.run("staff", "token", "1001", "--name", "nightly report", "--days", "30")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith(staff.TOKEN_PREFIX)
    assert "nightly report" in made.stderr and "Bearer" in made.stderr
    with database(people) as session:
        token = session.scalar(sa.select(ApiToken))
        assert token.token_hash != secret and secret not in token.token_hash  # only the digest is kept
        assert staff.authenticate_token(secret).album == "1001"
    result = people.invoke("staff", "revoke", "1001", "helpdesk")
    assert result.exit_code == 0 and "revoked helpdesk" in result.stdout
    assert _roles(people, "1001") == []
    with database(people) as session:
        assert staff.authenticate_token(secret) is None
        assert session.scalar(sa.select(ApiToken.revoked_at)) is not None
    again = people.invoke("staff", "revoke", "1001", "helpdesk")
    assert again.exit_code == 0 and "did not have helpdesk" in again.stdout


def test_tokens_only_for_staff(ready, tmp_path):
    people = _people(ready, tmp_path)
    result = people.run("staff", "token", "1002")
    assert result.returncode == 1
    assert "console role" in result.stderr
