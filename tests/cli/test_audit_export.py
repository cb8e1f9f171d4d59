"""`idp audit export`: the audit log as JSON lines for the university's records — UTF-8, one event per
line, oldest first, filtered by time, action prefix and person; exit 1 for an unknown person, 2 for a date
it cannot read."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess

import pytest
from click.testing import CliRunner

from idp.cli import main
from idp.core import audit
from tests.cli.conftest import IDP
from tests.factories import create_account

T0 = dt.datetime(2025, 6, 30, 22, 30, 0)


@pytest.fixture
def events(app, person):
    """Events of two people over three days (the person's own in an order their ids do not follow)."""
    other = create_account("54321", first_name="Zoë", last_name="Kowalska", university_email=None,
                           private_email="zoe@example.com", aliases=(), pesel=None)
    rows = {
        "failed": audit.record("login.failed", account_id=person.id, reason="wrong_password", client_ip="192.0.2.1",
                               now=T0),
        "unlock": audit.record("helpdesk.unlock", actor="halina@example.edu.pl", account_id=person.id,
                               data={"why": "Zadzwonił: zablokowane konto — Łódź", "via": "api"},
                               now=T0 + dt.timedelta(hours=2)),
        "other": audit.record("login.failed", account_id=other.id, reason="locked", now=T0 + dt.timedelta(days=1)),
        "ok": audit.record("login.succeeded", account_id=person.id, now=T0 + dt.timedelta(days=2)),
    }
    return {name: e.id for name, e in rows.items()}


@pytest.fixture
def export(app, database_url, instance_dir):
    """Run `idp audit export ARGS` in-process against the test database; (exit code, stdout, stderr)."""
    def run(*args: str):
        env = {k: None for k in os.environ if k.startswith("IDP_")}
        env.update({"IDP_INSTANCE": str(instance_dir), "IDP_DATABASE_URL": database_url})
        result = CliRunner().invoke(main, ["audit", "export", *args], env=env, catch_exceptions=False)
        return result.exit_code, result.stdout_bytes, result.stderr
    return run


def _lines(raw: bytes) -> list[dict]:
    text = raw.decode("utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def _ours(rows: list[dict], events: dict) -> list[int]:
    wanted = set(events.values())
    return [r["id"] for r in rows if r["id"] in wanted]


def test_everything_oldest_first_as_json_lines(export, events, person):
    code, out, err = export()
    assert code == 0, err
    rows = _lines(out)
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids)
    assert _ours(rows, events) == [events["failed"], events["unlock"], events["other"], events["ok"]]
    assert f"exported {len(rows)} event(s)" in err
    unlock = next(r for r in rows if r["id"] == events["unlock"])
    assert unlock == {"id": events["unlock"], "reference": f"E{events['unlock']}", "at": "2025-07-01T00:30:00Z",
                      "action": "helpdesk.unlock", "actor": "halina@example.edu.pl", "account_id": person.id,
                      "reason": None, "client_ip": None,
                      "data": {"why": "Zadzwonił: zablokowane konto — Łódź", "via": "api"}}


def test_utf8_as_it_is(export, events):
    _code, out, _err = export("--action", "helpdesk.")
    assert "Łódź".encode() in out and b"\\u0141" not in out


def test_action_prefix(export, events):
    _code, out, _err = export("--action", "login.failed")
    assert [r["id"] for r in _lines(out)] == [events["failed"], events["other"]]


@pytest.mark.parametrize("identifier", ["12345", "lukasz.z@example.com", "S12345@student.example.edu.pl"])
def test_account(export, events, identifier):
    code, out, _err = export("--account", identifier, "--action", "login.")
    assert code == 0
    assert [r["id"] for r in _lines(out)] == [events["failed"], events["ok"]]


def test_dates_and_times(export, events):
    # a bare --until date includes that whole day (UTC); --since is inclusive
    assert [r["id"] for r in _lines(export("--until", "2025-06-30")[1])] == [events["failed"]]
    assert _ours(_lines(export("--since", "2025-07-01", "--until", "2025-07-01")[1]), events) == [
        events["unlock"], events["other"]]
    # ISO date-times: UTC without an offset, converted with one
    assert _ours(_lines(export("--since", "2025-06-30T23:00:00", "--until", "2025-07-02T01:00:00+02:00")[1]),
                 events) == [events["unlock"], events["other"]]
    assert _ours(_lines(export("--since", "2025-07-02T22:30:00Z")[1]), events) == [events["ok"]]


def test_output_file(export, events, tmp_path):
    target = tmp_path / "audit.jsonl"
    code, out, err = export("--action", "login.", "--output", str(target))
    assert code == 0 and out == b""
    assert [r["id"] for r in _lines(target.read_bytes())] == [events["failed"], events["other"], events["ok"]]
    assert f"exported 3 event(s) to {target}" in err


def test_nothing_matches(export, events):
    code, out, err = export("--action", "nothing.")
    assert (code, out) == (0, b"")
    assert "exported 0 event(s)" in err


def test_unknown_account_exits_1(export, events):
    code, out, err = export("--account", "nobody@example.com")
    assert code == 1 and out == b""
    assert err.strip() == "idp: no person with the identifier 'nobody@example.com'"


@pytest.mark.parametrize("option, value", [("--since", "yesterday"), ("--until", "2025-02-30"),
                                           ("--since", "30.06.2025"), ("--until", "2025-06-30T25:00")])
def test_bad_dates_exit_2(export, events, option, value):
    code, out, err = export(option, value)
    assert code == 2 and out == b""
    assert "YYYY-MM-DD" in err


def test_the_real_command_writes_utf8_whatever_the_locale(app, events, database_url, instance_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update({"IDP_INSTANCE": str(instance_dir), "IDP_DATABASE_URL": database_url, "LANG": "C", "LC_ALL": "C",
                "PYTHONIOENCODING": "ascii"})
    done = subprocess.run([str(IDP), "audit", "export", "--action", "helpdesk."], capture_output=True, env=env,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["id"] for line in done.stdout.decode("utf-8").splitlines()] == [events["unlock"]]
    assert "Łódź".encode() in done.stdout


def test_an_output_file_that_cannot_be_written_exits_2(export, events, tmp_path):
    code, _out, err = export("--output", str(tmp_path / "no-such-folder" / "audit.jsonl"))
    assert code == 2
    assert err.startswith("idp: cannot write ") and len(err.strip().splitlines()) == 1
