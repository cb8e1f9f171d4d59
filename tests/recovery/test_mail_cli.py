"""`idp mail status` and `idp mail send` (click's CliRunner, in-process) against the instance and database
the app fixture uses: counts printed, addresses only masked."""
from __future__ import annotations

import logging
import os
import re

import pytest
from click.testing import CliRunner

from idp.cli import main
from tests.recovery.helpers import PRIVATE, USER, USER_MASKED, outbox_rows, request_link

FLOOR_ARGON2 = {"IDP_ARGON2_TIME_COST": "2", "IDP_ARGON2_MEMORY_COST": "19456", "IDP_ARGON2_PARALLELISM": "1"}


@pytest.fixture(autouse=True)
def _restore_log_levels():
    """The CLI quiets the idp and alembic loggers; in-process runs must not leak that into other tests."""
    levels = {n: logging.getLogger(n).level for n in ("idp", "alembic")}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def idp_cli(app, instance_dir, database_url):
    """Run `idp …` in-process with IDP_INSTANCE set to the app fixture's instance (its secrets) and its
    database; the mail settings are the app's current ones (the sink fixtures set them)."""
    def run(*args: str, **extra_env: str):
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("IDP_")}
        env.update(FLOOR_ARGON2, IDP_INSTANCE=str(instance_dir), IDP_DATABASE_URL=database_url,
                   IDP_BASE_URL=app.config["BASE_URL"], IDP_MAIL_SERVER=app.config["MAIL_SERVER"],
                   IDP_MAIL_PORT=str(app.config["MAIL_PORT"]), **extra_env)
        result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output
    return run


def no_full_address(output: str) -> None:
    for address in (USER, PRIVATE):
        assert address not in output.lower(), output
    for local in re.findall(r"([\w.+*\-]+)@[\w\-]+\.[\w.\-]+", output):
        assert re.fullmatch(r"\w\*\*\*", local), (local, output)


def test_status_of_an_empty_outbox(idp_cli):
    assert idp_cli("mail", "status").splitlines() == ["queued 0, sent 0, failed 0"]


def test_status_and_send(client, person, smtp_sink, idp_cli):
    assert request_link(client, USER).status_code == 200
    out = idp_cli("mail", "status")
    lines = out.splitlines()
    assert lines[0] == "queued 1, sent 0, failed 0"
    [row] = outbox_rows()
    assert re.fullmatch(rf"  #{row.id} queued reset_link\s+to {re.escape(USER_MASKED)} tries 0, "
                        r"next \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", lines[1]), lines[1]
    no_full_address(out)

    out = idp_cli("mail", "send")
    assert out.strip() == "sent 1, to retry 0, failed for good 0; queue: 0 queued, 1 sent, 0 failed"
    assert len(smtp_sink.to(USER)) == 1
    assert idp_cli("mail", "status").splitlines() == ["queued 0, sent 1, failed 0"]
    # Nothing is due: sending again sends nothing.
    assert idp_cli("mail", "send").startswith("sent 0, to retry 0, failed for good 0;")
    assert len(smtp_sink.messages) == 1


def test_send_with_the_smtp_server_down_then_up(client, person, smtp_down, idp_cli, clock):
    assert request_link(client, USER).status_code == 200
    out = idp_cli("mail", "send")
    assert out.strip() == "sent 0, to retry 1, failed for good 0; queue: 1 queued, 0 sent, 0 failed"
    out = idp_cli("mail", "status")
    assert out.splitlines()[0] == "queued 1, sent 0, failed 0"
    assert "tries 1" in out and "ConnectionRefusedError" in out
    no_full_address(out)
    smtp_down.start()
    clock.advance(minutes=1)
    assert idp_cli("mail", "send").startswith("sent 1, to retry 0, failed for good 0;")
    assert len(smtp_down.messages) == 1


def test_status_shows_failures_with_their_reason_masked(client, person, smtp_sink, idp_cli):
    smtp_sink.refuse.add(USER)
    assert request_link(client, USER).status_code == 200
    out = idp_cli("mail", "send", IDP_MAIL_MAX_ATTEMPTS="1")
    assert out.strip() == "sent 0, to retry 0, failed for good 1; queue: 0 queued, 0 sent, 1 failed"
    out = idp_cli("mail", "status")
    lines = out.splitlines()
    assert lines[0] == "queued 0, sent 0, failed 1"
    assert re.match(rf"  #\d+ failed reset_link\s+to {re.escape(USER_MASKED)} tries 1, ", lines[1]), lines[1]
    assert "SMTPRecipientsRefused" in lines[1] and "550" in lines[1]
    no_full_address(out)
