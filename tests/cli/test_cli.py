"""The `idp` command as the contract (DESIGN.md §2) describes it: exit codes, one-line reasons, stdin
passwords, the all-or-nothing import, the registry load, and every command from any directory."""
from __future__ import annotations

import json
import os
import stat
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from idp import create_app
from idp.config import PROJECT_ROOT
from idp.extensions import db
from idp.models import Account, ImportRun, Service
from tests.cli.conftest import IDP
from tests.conftest import CHEAP_ARGON2
from tests.core.helpers import csv_bytes, person, wrong_check_digit

STRONG = "Wiatrak-Pomidor-Latarnia-42"
SERVICES = '''
[[service]]
name = "USOSweb"
protocol = "cas"
service_pattern = '^https://usosweb\\.example\\.edu\\.pl/.*'
attributes = ["mail", "album"]

[[service]]
name = "e-learning"
protocol = "oidc"
client_id = "elearning"
redirect_uris = ["https://elearning.example.edu.pl/oidc/callback"]
'''


@contextmanager
def database(instance):
    """Look into the instance's database (the same one the command used)."""
    url = instance.env.get("IDP_DATABASE_URL") or f"sqlite:///{instance.folder / 'idp.sqlite3'}"
    app = create_app({"TESTING": True, "DATABASE_URL": url, **CHEAP_ARGON2}, instance=instance.folder)
    with app.app_context():
        try:
            yield db.session
        finally:
            db.session.remove()
            db.engine.dispose()


def account(instance, album: str) -> dict:
    with database(instance) as session:
        a = session.scalar(sa.select(Account).where(Account.album == album))
        return None if a is None else {"hash": a.password_hash, "temporary": a.password_temporary,
                                       "identifiers": sorted(i.value for i in a.identifiers)}


def write_csv(path, rows, **kwargs):
    path.write_bytes(csv_bytes(rows, **kwargs))
    return path


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# --- help and usage ------------------------------------------------------------------------------------

def test_help_of_the_console_script(instance):
    result = instance.run("--help", cwd="/tmp")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: idp")
    for command in ("init", "users", "services", "serve"):
        assert command in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("args", [
    ["-h"], ["init", "--help"], ["users", "--help"], ["users", "import", "--help"],
    ["users", "set-password", "--help"], ["services", "--help"], ["services", "load", "--help"], ["serve", "--help"],
    ["staff", "--help"], ["staff", "grant", "--help"], ["staff", "token", "--help"], ["audit", "export", "--help"],
    ["throttle", "address", "--help"],
])
def test_help_of_every_command(instance, args):
    result = instance.invoke(*args)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    assert result.stderr == ""
    assert not (instance.folder / "secrets.toml").exists()  # help creates nothing


def test_help_texts_describe_the_contract(instance):
    assert "birth_date" in instance.invoke("users", "import", "--help").stdout
    assert "--temporary" in instance.invoke("users", "set-password", "--help").stdout


def test_unknown_command_is_a_usage_error(instance):
    result = instance.run("frobnicate")
    assert result.returncode == 2
    assert "frobnicate" in result.stderr


# --- init -----------------------------------------------------------------------------------------------

def test_init_twice(instance):
    first = instance.run("init", cwd="/tmp")
    assert first.returncode == 0, first.stderr
    assert str(instance.folder) in first.stdout
    secrets = instance.folder / "secrets.toml"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    content = secrets.read_text()
    second = instance.run("init", cwd="/tmp")
    assert second.returncode == 0, second.stderr
    assert secrets.read_text() == content
    with database(instance) as session:
        tables = set(sa.inspect(session.get_bind()).get_table_names())
    assert {"account", "identifier", "service", "import_run", "alembic_version"} <= tables


def test_instance_option_equals_the_environment_variable(instance, tmp_path):
    other = tmp_path / "other"
    result = instance.invoke("--instance", str(other), "init", env={"IDP_INSTANCE": None})
    assert result.exit_code == 0, result.output
    assert (other / "secrets.toml").exists()


@pytest.mark.parametrize("args", [
    ["users", "import", "people.csv"], ["users", "set-password", "12345"], ["services", "load", "services.toml"],
])
def test_commands_before_init_say_so_in_one_line(instance, tmp_path, monkeypatch, args):
    write_csv(tmp_path / "people.csv", [person(1)])
    (tmp_path / "services.toml").write_text(SERVICES)
    monkeypatch.chdir(tmp_path)
    result = instance.invoke(*args, input=STRONG + "\n")
    assert result.exit_code != 0
    assert "idp init" in one_line(result.stderr)
    assert result.stdout == ""


def test_before_init_with_the_real_script(instance, tmp_path):
    result = instance.run("users", "import", str(write_csv(tmp_path / "people.csv", [person(1)])), cwd="/tmp")
    assert result.returncode != 0
    assert "idp init" in one_line(result.stderr)


def test_bad_policy_stops_init_with_one_line(instance, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[password]\nmin_length = 3\n")
    result = instance.run("init", env={"IDP_POLICY": str(bad)}, cwd="/tmp")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert str(bad) in line and "password.min_length" in line
    for text in ("[pasword]\n", "[password\n", "[password]\nmin_length = '12'\n"):
        bad.write_text(text)
        result = instance.invoke("init", env={"IDP_POLICY": str(bad)})
        assert result.exit_code == 2
        assert str(bad) in one_line(result.stderr)


def test_bad_config_stops_init_with_one_line(instance):
    (instance.folder / "idp.toml").write_text('base_url = "http://127.0.0.1:8000"\nticket_lifetme = 5\n')
    result = instance.run("init")
    assert result.returncode == 2
    assert "ticket_lifetme" in one_line(result.stderr)


def test_argon2_floor_applies_to_the_command(instance):
    result = instance.run("init", env={"IDP_ARGON2_MEMORY_COST": "1024"})
    assert result.returncode == 2
    assert "ARGON2_MEMORY_COST" in one_line(result.stderr)


def test_unreachable_database_is_one_line(instance):
    result = instance.run("init", env={"IDP_DATABASE_URL": "postgresql://127.0.0.1:1/nope?connect_timeout=2"})
    assert result.returncode == 2
    assert "database" in one_line(result.stderr)
    result = instance.invoke("init", env={"IDP_DATABASE_URL": "mysql://127.0.0.1/idp"})
    assert result.exit_code == 2
    assert "DATABASE_URL" in one_line(result.stderr)


# --- users import ----------------------------------------------------------------------------------------

def test_import_and_reimport(ready, tmp_path):
    path = write_csv(tmp_path / "people.csv", [person(1), person(2, first_name="Łukasz", last_name="Żółkiewski")],
                     bom=True)
    result = ready.invoke("users", "import", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "added 2, updated 0, unchanged 0, rejected 0"
    result = ready.invoke("users", "import", str(path))
    assert result.stdout.strip() == "added 0, updated 0, unchanged 2, rejected 0"
    write_csv(path, [person(1, last_name="Nowak"), person(2, first_name="Łukasz", last_name="Żółkiewski"), person(3)])
    result = ready.invoke("users", "import", str(path))
    assert result.stdout.strip() == "added 1, updated 1, unchanged 1, rejected 0"
    with database(ready) as session:
        runs = session.scalars(sa.select(ImportRun).order_by(ImportRun.id)).all()
        assert [(r.status, r.added, r.updated, r.unchanged) for r in runs] == [
            ("ok", 2, 0, 0), ("ok", 0, 0, 2), ("ok", 1, 1, 1)]
        assert session.scalar(sa.select(Account.last_name).where(Account.album == "1002")) == "Żółkiewski"


def test_import_with_bad_rows_imports_nothing(ready, tmp_path):
    good = write_csv(tmp_path / "good.csv", [person(1)])
    assert ready.invoke("users", "import", str(good)).exit_code == 0
    rows = [person(1, last_name="Zmieniony"), person(2, pesel=wrong_check_digit(person(2)["pesel"])), person(3),
            person(4, album="1003"), person(5, role="dean"), person(6, private_email="jk3@example.com")]
    path = write_csv(tmp_path / "sis.csv", rows)
    result = ready.run("users", "import", str(path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "idp: nothing imported: 4 bad row(s) in sis.csv"
    body = "\n".join(lines[:-1])
    for line_no in (3, 5, 6, 7):
        assert f"sis.csv: line {line_no}:" in body
    assert "line 2:" not in body and "line 4:" not in body
    assert "wrong check digit" in body and "line 4" in body  # duplicate album names the first line too
    for row in rows:
        assert row["pesel"] not in result.stdout + result.stderr
    assert result.stdout == "added 0, updated 0, unchanged 0, rejected 4\n"
    with database(ready) as session:
        assert session.scalars(sa.select(Account.last_name)).all() == ["Kowalski1"]
        assert [r.status for r in session.scalars(sa.select(ImportRun).order_by(ImportRun.id))] == ["ok", "rejected"]


def test_import_missing_and_unknown_columns(ready, tmp_path):
    path = write_csv(tmp_path / "p.csv", [person(1)], columns=["album", "pesel", "first_name", "last_name",
                                                                 "university_email", "private_email", "role"])
    result = ready.invoke("users", "import", str(path))
    assert result.exit_code == 1
    assert "aliases" in one_line(result.stderr)
    write_csv(path, [person(1, telefon="600100200")])
    result = ready.invoke("users", "import", str(path))
    assert result.exit_code == 1
    assert "telefon" in one_line(result.stderr)


def test_import_of_a_missing_file(ready, tmp_path):
    result = ready.invoke("users", "import", str(tmp_path / "nope.csv"))
    assert result.exit_code == 1
    assert "nope.csv" in one_line(result.stderr)


def test_progress_bar_only_for_long_files(ready, tmp_path):
    short = write_csv(tmp_path / "short.csv", [person(n) for n in range(1, 4)])
    result = ready.invoke("users", "import", str(short))
    assert result.exit_code == 0 and result.stderr == ""
    long = write_csv(tmp_path / "long.csv", [person(n) for n in range(1, 601)])
    result = ready.run("users", "import", str(long))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "added 597, updated 0, unchanged 3, rejected 0\n"  # the bar stays off stdout
    assert "importing" in result.stderr
    assert "Traceback" not in result.stderr
    with database(ready) as session:
        assert session.scalar(sa.select(sa.func.count(Account.id))) == 600


# --- users set-password ----------------------------------------------------------------------------------

@pytest.fixture
def people(ready, tmp_path):
    rows = [person(1), person(2, first_name="Łukasz", last_name="Żółkiewski", album="12345",
                                university_email="lukasz.zolkiewski@student.example.edu.pl")]
    result = ready.invoke("users", "import", str(write_csv(tmp_path / "people.csv", rows)))
    assert result.exit_code == 0, result.output
    return ready


def _verifies(stored: str, password: str) -> bool:
    from argon2 import PasswordHasher
    from argon2.exceptions import VerifyMismatchError

    try:
        return PasswordHasher().verify(stored, password)
    except VerifyMismatchError:
        return False


def test_set_password_from_stdin(people):
    result = people.run("users", "set-password", "LUKASZ.Zolkiewski@student.example.edu.pl", input=STRONG + "\n")
    assert result.returncode == 0, result.stderr
    assert "12345" in result.stdout
    assert STRONG not in result.stdout + result.stderr
    state = account(people, "12345")
    assert state["hash"].startswith("$argon2id$") and "m=19456,t=2,p=1" in state["hash"]
    assert _verifies(state["hash"], STRONG)
    assert state["temporary"] is False


@pytest.mark.parametrize("identifier", ["12345", "s1002@student.example.edu.pl", "jk2@example.com"])
def test_set_password_by_any_identifier(people, identifier):
    result = people.invoke("users", "set-password", identifier, input=STRONG + "\n")
    assert result.exit_code == 0, result.output
    assert _verifies(account(people, "12345")["hash"], STRONG)


def test_only_the_first_line_is_the_password(people):
    result = people.invoke("users", "set-password", "12345", input=STRONG + "\r\nsomething else\n")
    assert result.exit_code == 0, result.output
    stored = account(people, "12345")["hash"]
    assert _verifies(stored, STRONG)
    assert not _verifies(stored, STRONG + "\r")


def test_spaces_are_part_of_the_password(people):
    result = people.invoke("users", "set-password", "12345", input=f"  {STRONG} \n")
    assert result.exit_code == 0, result.output
    stored = account(people, "12345")["hash"]
    assert _verifies(stored, f"  {STRONG} ")
    assert not _verifies(stored, STRONG)


def test_refused_password_lists_every_rule(people):
    result = people.run("users", "set-password", "12345", input="łukasz\n")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "idp: password refused by the policy"
    rules = [line for line in lines[:-1] if line.startswith("- ")]
    assert len(rules) == 3  # too short, personal data, too easy to guess
    assert len(rules) == len(lines) - 1
    assert account(people, "12345")["hash"] is None


def test_refused_password_with_agh_rules(people):
    result = people.invoke("users", "set-password", "12345", input="abc\n",
                           env={"IDP_POLICY": str(PROJECT_ROOT / "policies" / "agh.toml")})
    assert result.exit_code == 1
    rules = [line for line in result.stderr.splitlines() if line.startswith("- ")]
    assert len(rules) == 4  # too short, no upper case, no digit or special, too easy to guess


def test_temporary(people):
    result = people.invoke("users", "set-password", "--temporary", "12345", input=STRONG + "\n")
    assert result.exit_code == 0, result.output
    assert "temporary" in result.stdout
    assert account(people, "12345")["temporary"] is True
    people.invoke("users", "set-password", "12345", input=STRONG + "-2\n")
    assert account(people, "12345")["temporary"] is False


def test_first_login_change_policy_makes_it_temporary(people):
    # a relative IDP_POLICY names a file of the project, whatever the current directory
    result = people.run("users", "set-password", "12345", input=STRONG + "\n",
                        env={"IDP_POLICY": "policies/kpu-krosno.toml"}, cwd="/tmp")
    assert result.returncode == 0, result.stderr
    assert account(people, "12345")["temporary"] is True


def test_unknown_identifier(people):
    result = people.invoke("users", "set-password", "nikt@example.edu.pl", input=STRONG + "\n")
    assert result.exit_code == 1
    assert "nikt@example.edu.pl" in one_line(result.stderr)


@pytest.mark.parametrize("stdin", ["", "\n"])
def test_empty_password(people, stdin):
    result = people.invoke("users", "set-password", "12345", input=stdin)
    assert result.exit_code == 1
    assert "empty" in one_line(result.stderr)


# --- services load ---------------------------------------------------------------------------------------

def test_services_load_reports_changes(ready, tmp_path):
    path = tmp_path / "services.toml"
    path.write_text(SERVICES)
    result = ready.invoke("services", "load", str(path))
    assert result.exit_code == 0, result.output
    assert "added: USOSweb, e-learning" in result.stdout
    assert result.stdout.strip().endswith("2 added, 0 changed, 0 removed, 0 unchanged")
    path.write_text(SERVICES.replace('"mail", "album"', '"mail"').split('[[service]]\nname = "e-learning"')[0])
    result = ready.invoke("services", "load", str(path))
    assert result.stdout.strip().endswith("0 added, 1 changed, 1 removed, 0 unchanged")
    with database(ready) as session:
        assert session.scalars(sa.select(Service.name)).all() == ["USOSweb"]


def test_services_load_bad_file_names_the_key(ready, tmp_path):
    path = tmp_path / "services.toml"
    path.write_text(SERVICES)
    assert ready.invoke("services", "load", str(path)).exit_code == 0
    path.write_text(SERVICES.replace('attributes = ["mail", "album"]', 'atributes = ["mail"]'))
    result = ready.invoke("services", "load", str(path))
    assert result.exit_code == 1
    line = one_line(result.stderr)
    assert "USOSweb" in line and "atributes" in line and "services.toml" in line
    with database(ready) as session:  # the registry is untouched
        assert sorted(session.scalars(sa.select(Service.name))) == ["USOSweb", "e-learning"]


def test_services_load_bad_regex_is_one_line(ready, tmp_path):
    path = tmp_path / "services.toml"
    path.write_text(SERVICES.replace("'^https://usosweb", "'^(https://usosweb"))
    result = ready.run("services", "load", str(path))
    assert result.returncode == 1
    line = one_line(result.stderr)  # RE2's own log line must not leak to stderr
    assert "USOSweb" in line and "service_pattern" in line


def test_services_load_missing_file(ready, tmp_path):
    result = ready.invoke("services", "load", str(tmp_path / "nope.toml"))
    assert result.exit_code == 1
    assert "nope.toml" in one_line(result.stderr)


# --- from any directory ----------------------------------------------------------------------------------

def test_every_command_from_another_directory(instance, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    write_csv(work / "people.csv", [person(1), person(2)])
    (work / "services.toml").write_text(SERVICES)
    env = {"IDP_INSTANCE": os.path.relpath(instance.folder, work)}  # a relative instance, from cwd
    steps = [
        (["init"], None),
        (["users", "import", "people.csv"], None),
        (["services", "load", "services.toml"], None),
        (["users", "set-password", "1001"], STRONG + "\n"),
    ]
    for args, stdin in steps:
        result = instance.run(*args, input=stdin, cwd=work, env=env)
        assert result.returncode == 0, (args, result.stderr)
    for args, stdin in [(["users", "import", str(work / "people.csv")], None),
                        (["users", "set-password", "1002"], STRONG + "\n")]:
        result = instance.run(*args, input=stdin, cwd="/tmp")
        assert result.returncode == 0, (args, result.stderr)
    assert _verifies(account(instance, "1002")["hash"], STRONG)
    assert not (work / "instance").exists() and not (work / "idp.sqlite3").exists()


def test_the_console_script_is_installed():
    assert IDP.exists()


class _Terminal:
    """Stands in for the `sys` module inside idp.cli: a terminal on stdin, prompts answered by getpass."""

    def __init__(self):
        import sys

        self._sys = sys

    def __getattr__(self, name):
        return getattr(self._sys, name)

    class stdin:  # noqa: N801
        @staticmethod
        def isatty():
            return True


@pytest.mark.parametrize("answers, code", [([STRONG, STRONG], 0), ([STRONG, STRONG + "x"], 1)])
def test_terminal_asks_twice_without_echo(people, monkeypatch, answers, code):
    import idp.cli

    asked = list(answers)
    monkeypatch.setattr(idp.cli, "sys", _Terminal())
    monkeypatch.setattr(idp.cli.getpass, "getpass", lambda prompt: asked.pop(0))
    result = people.invoke("users", "set-password", "12345")
    assert result.exit_code == code, result.output
    assert asked == []
    stored = account(people, "12345")["hash"]
    if code == 0:
        assert _verifies(stored, STRONG)
    else:
        assert stored is None
        assert "do not match" in one_line(result.stderr)


# --- idp throttle address ---------------------------------------------------------------------------------

def test_throttle_address_shows_lifts_and_audits(ready):
    result = ready.invoke("throttle", "address", "203.0.113.7")
    assert result.exit_code == 0, result.output
    assert one_line(result.stdout) == "203.0.113.7: nothing counted"
    result = ready.invoke("throttle", "address", "2001:db8::17", "--lift", "--reason", "campus NAT, ticket 42")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "2001:db8::/64: cleared"  # IPv6 counts per /64
    exported = ready.invoke("audit", "export", "--action", "address.unblocked").stdout
    [event] = [json.loads(line) for line in exported.splitlines()]
    assert event["client_ip"] == "2001:db8::/64" and event["data"] == {"reason": "campus NAT, ticket 42"}


def test_throttle_address_refuses_what_is_not_an_address(ready):
    result = ready.invoke("throttle", "address", "example.edu.pl")
    assert result.exit_code == 1
    assert "not an IP address" in result.stderr


# --- files and input that are not what they should be ------------------------------------------------------

def test_a_password_that_is_not_utf8_is_refused_in_one_line(people):
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")} | people.env
    result = subprocess.run([str(IDP), "users", "set-password", "12345"], input=b"p\xe9ssword-Latarnia-42\n",
                            capture_output=True, env=env, timeout=60)
    assert result.returncode == 1
    assert one_line(result.stderr.decode()) == "idp: the password is not valid UTF-8"


def test_services_file_not_utf8_is_one_line(ready, tmp_path):
    path = tmp_path / "services.toml"
    path.write_bytes(SERVICES.encode().replace(b"USOSweb", b"USOSw\xe9b", 1))
    result = ready.run("services", "load", str(path))
    assert result.returncode == 1
    assert "services.toml: not UTF-8" in one_line(result.stderr)


def test_services_file_with_a_bom_loads(ready, tmp_path):
    path = tmp_path / "services.toml"
    path.write_bytes(b"\xef\xbb\xbf" + SERVICES.encode())
    result = ready.invoke("services", "load", str(path))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("kind", ["not utf-8", "a folder"])
def test_unreadable_config_file_stops_init_with_one_line(instance, kind):
    path = instance.folder / "idp.toml"
    if kind == "a folder":
        path.mkdir()
    else:
        path.write_bytes(b'base_url = "http://caf\xe9.example"\n')
    result = instance.run("init")
    assert result.returncode == 2
    assert str(path) in one_line(result.stderr)


def test_an_instance_folder_that_is_a_file_is_one_line(instance, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    result = instance.run("init", env={"IDP_INSTANCE": str(afile)})
    assert result.returncode == 2
    assert "cannot use as the instance folder" in one_line(result.stderr)


def test_default_instance_is_instance_in_the_current_folder(instance, tmp_path):
    """The contract: `./instance` by default."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"IDP_INSTANCE": ""}
    if "IDP_DATABASE_URL" in instance.env:  # PostgreSQL runs: the database is named, the folder still defaults
        env["IDP_DATABASE_URL"] = instance.env["IDP_DATABASE_URL"]
    result = instance.run("init", cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    assert str(work / "instance") in result.stdout
    assert (work / "instance" / "secrets.toml").exists()
