"""Mail as a relying app: a mail server registered for password verification, and how it calls the IdP.

The HTTP tests (Flask test client) play the mail server: HTTP Basic with its client credentials, the
person's login and password, and the IMAP client's address in `client_ip`. The end-to-end tests
(test_dovecot_e2e.py) run the real thing: `idp serve`, Dovecot, and Python's imaplib.
"""
from __future__ import annotations

import base64
import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from idp.extensions import db
from idp.models import AuditEvent
from tests.conftest import SERVICES, FreshContextClient

MAIL = "dovecot"  # the mail server: confidential, password_verification (+ introspection)
MAIL_SECRET = "dovecot-secret-" + "d" * 40
MAIL_NAME = "Poczta"
ELEARNING = "elearning"  # a confidential OIDC client that is not a mail service
ELEARNING_SECRET = "elearning-secret-" + "e" * 40
MAIL_SERVICE = {"name": MAIL_NAME, "protocol": "oidc", "client_id": MAIL, "client_secret": MAIL_SECRET,
                "grant_types": ["password_verification"]}
CLIENTS = [
    MAIL_SERVICE,
    {"name": "E-learning", "protocol": "oidc", "client_id": ELEARNING, "client_secret": ELEARNING_SECRET,
     "redirect_uris": ["https://elearning.example.edu.pl/oidc/callback"], "scopes": ["openid", "email"]},
]
USER = "lukasz.zolkiewski@student.example.edu.pl"
UNKNOWN = "nobody@student.example.edu.pl"
WRONG = "Not-The-Password-123"
#: The IMAP client's address as Dovecot reports it (documentation range, RFC 5737).
IMAP_CLIENT = "203.0.113.7"
#: 13:20 UTC in January is 14:20 in Warsaw (CET).
WINTER_AFTERNOON = dt.datetime(2026, 1, 15, 13, 20)


@pytest.fixture
def register(app):
    """register(**changes): the root conftest's CAS services and CLIENTS; `changes` alter the mail service."""
    from idp.core import registry

    def _register(**changes) -> None:
        clients = [dict(MAIL_SERVICE, **changes)] + [dict(c) for c in CLIENTS[1:]]
        registry.replace_all([dict(s) for s in SERVICES] + clients)

    _register()
    return _register


@pytest.fixture
def mail_server(app, register):
    """A test client speaking as the mail server (English, like the rest of the HTTP tests)."""
    c = FreshContextClient(app, app.response_class, use_cookies=False)
    c.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return c


@pytest.fixture
def afternoon(clock):
    clock.now = WINTER_AFTERNOON
    return clock


def basic(client_id: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def verify(c, username: str, password: str, *, client_ip: str | None = IMAP_CLIENT, as_json: bool = False,
           credentials: tuple[str, str] | None = (MAIL, MAIL_SECRET), protocol: str | None = "imap",
           headers: dict[str, str] | None = None):
    """POST /mail/verify-password the way contrib/dovecot/idp-checkpassword does (a form), or as JSON."""
    body = {"username": username, "password": password}
    if client_ip is not None:
        body["client_ip"] = client_ip
    if protocol is not None:
        body["protocol"] = protocol
    h = dict(headers or {})
    if credentials is not None:
        h.update(basic(*credentials))
    if as_json:
        return c.post("/mail/verify-password", json=body, headers=h)
    return c.post("/mail/verify-password", data=body, headers=h)


def events(action: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


# --- end to end: `idp serve` + Dovecot ---------------------------------------------------------------------
#
# The IdP is set up through its command line only (as in tests/e2e): init, users import, services load,
# users set-password, serve. Its policy differs from the default in one way: a wait of ten minutes after
# three wrong passwords, so that "throttled" does not depend on how fast the machine is.

#: IMAP LOGIN carries ASCII (imaplib refuses anything else); mail programs send other passwords with
#: AUTHENTICATE PLAIN in UTF-8. One person has Polish letters in the password for that.
E2E_PASSWORD = "Kwitnace-Jablonie-Nad-Wisla-73"
E2E_POLISH_PASSWORD = "Kwitnące-Jabłonie-Nad-Wisłą-73"
E2E_WEBMAIL = "webmail"  # a mail program that logs people in through the browser (OAuth), e.g. Roundcube
E2E_WEBMAIL_SECRET = "webmail-secret-" + "w" * 40
#: Never contacted: the test reads the authorization code from the redirect.
E2E_WEBMAIL_CALLBACK = "http://127.0.0.1:9/oauth/callback"
#: Access tokens live this long in the served IdP (one test waits for a token to expire).
E2E_TOKEN_LIFETIME = 15
E2E_POLICY = """[login]
delay_seconds = 600
delay_max_seconds = 600
"""


@dataclass
class MailPerson:
    album: str
    login: str  # canonical: the university e-mail, lower case
    password: str


@dataclass
class MailSetup:
    idp_url: str
    env: dict
    imap_port: int
    dovecot: object
    people: dict


def _e2e_people() -> list[dict[str, str]]:
    rows = []
    for album, first, last in (("12345", "Łukasz", "Żółkiewski"), ("23456", "Olena", "Szewczenko"),
                               ("34567", "Piotr", "Nowak"), ("45678", "Anna", "Kowalska")):
        rows.append({"album": album, "pesel": "", "birth_date": "2001-02-03", "first_name": first,
                     "last_name": last, "university_email": f"s{album}@Student.Example.edu.pl",
                     "private_email": "", "role": "student", "aliases": ""})
    return rows


def _write_e2e_inputs(folder: Path) -> tuple[Path, Path, Path]:
    rows = _e2e_people()
    people = folder / "people.csv"
    people.write_text(",".join(rows[0]) + "\n" + "".join(",".join(r.values()) + "\n" for r in rows),
                      encoding="utf-8")
    services = folder / "services.toml"
    services.write_text(
        "[[service]]\n"
        f'name = "{MAIL_NAME}"\n'
        'protocol = "oidc"\n'
        f'client_id = "{MAIL}"\n'
        f'client_secret = "{MAIL_SECRET}"\n'
        'grant_types = ["password_verification"]\n'
        "\n"
        "[[service]]\n"
        'name = "Webmail"\n'
        'protocol = "oidc"\n'
        f'client_id = "{E2E_WEBMAIL}"\n'
        f'client_secret = "{E2E_WEBMAIL_SECRET}"\n'
        f'redirect_uris = ["{E2E_WEBMAIL_CALLBACK}"]\n'
        'scopes = ["openid", "email", "profile"]\n'
        'grant_types = ["authorization_code", "refresh_token"]\n'
        "first_party = true\n",
        encoding="utf-8")
    policy = folder / "policy.toml"
    policy.write_text(E2E_POLICY, encoding="utf-8")
    return people, services, policy


@pytest.fixture(scope="session")
def mail_setup(tmp_path_factory) -> Iterator[MailSetup]:
    """A served IdP with four students (passwords set through the CLI; the last one's temporary) and a
    Dovecot that asks it, both on free ports of 127.0.0.1."""
    from tests.e2e.conftest import clean_env, own_database, run_idp, serve, stop_process_group
    from tests.mail import dovecot as dovecot_mod

    with own_database("idp_mail") as database_env:
        instance = tmp_path_factory.mktemp("mail-idp-instance")
        people_csv, services, policy = _write_e2e_inputs(tmp_path_factory.mktemp("mail-idp-input"))
        env = clean_env(IDP_INSTANCE=str(instance), CI=os.environ.get("CI", "true"), IDP_POLICY=str(policy),
                        IDP_ARGON2_TIME_COST="2", IDP_ARGON2_MEMORY_COST="19456", IDP_ARGON2_PARALLELISM="1",
                        IDP_OIDC_ACCESS_TOKEN_LIFETIME=str(E2E_TOKEN_LIFETIME), PYTHONUNBUFFERED="1",
                        **database_env)
        run_idp(["init"], env)
        assert "added 4" in run_idp(["users", "import", str(people_csv)], env)
        run_idp(["services", "load", str(services)], env)
        people = {}
        for n, row in enumerate(_e2e_people()):
            temporary = n == 3
            password = f"{E2E_POLISH_PASSWORD if row['album'] == '23456' else E2E_PASSWORD}-{n}"
            run_idp(["users", "set-password", *(["--temporary"] if temporary else []), row["album"]], env,
                    stdin=password + "\n")
            people[row["album"]] = MailPerson(row["album"], row["university_email"].lower(), password)
        log = instance / "idp-serve.log"
        proc = None
        dovecot = None
        try:
            proc, url, _port = serve(instance, env, log)
            try:
                dovecot = dovecot_mod.start(idp_url=url, client_id=MAIL, client_secret=MAIL_SECRET)
            except RuntimeError as exc:
                pytest.fail(str(exc), pytrace=False)
            yield MailSetup(idp_url=url, env=env, imap_port=dovecot.port, dovecot=dovecot, people=people)
        finally:
            if dovecot is not None:
                dovecot.stop()
            if proc is not None:
                stop_process_group(proc)
