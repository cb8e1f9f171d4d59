"""The world the journeys walk in, set up only through the `idp` command line (as tests/e2e does):

- the IdP under test (`idp serve`), its mail going to an SMTP sink (tests/smtp_sink.py);
- an upstream OpenID Connect provider — the university mail system — which is another `idp serve` with its
  own instance, configured as an [[upstream]] in the IdP's idp.toml;
- a CAS relying app (tests/e2e/relying_app.py) serving two registered services: "USOSweb" (everyone) and
  "Moodle" (requires_entitlement: only people the SIS export entitles); an OpenID Connect client that is
  not first-party ("Biblioteka cyfrowa": its consent page; nothing answers at its redirect URI);
- people: one per journey and language, imported from a CSV, passwords set with `idp users set-password`;
  the helpdesk people get the console role with `idp staff grant`.

The IdP's policy locks an account after three wrong passwords in a row (the default's ten would make the
helpdesk journey long) and adds no growing delays, so no step waits on a clock.
With IDP_TEST_DATABASE_URL / IDP_TEST_REDIS_URL the IdP under test runs on PostgreSQL (a schema of its
own) and Redis (a key prefix of its own), like the rest of the suite.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

# The browser fixtures and the per-test time limit are the e2e suite's own (importing registers them here).
from tests.e2e.conftest import (  # noqa: F401
    clean_env,
    new_context,
    own_database,
    run_idp,
    serve,
    stop_process_group,
    time_limit,
)
from tests.e2e.relying_app import RelyingApp
from tests.journeys import axe
from tests.journeys.journey import Journey, artifacts_root
from tests.smtp_sink import SmtpSink

LANGS = ["pl", "en"]
#: The browser's language decides the pages' language (Accept-Language), as for a real visitor.
LOCALES = {"pl": "pl-PL", "en": "en-GB"}
UPSTREAM_LABEL = "Poczta uczelniana"
UPSTREAM_CLIENT_SECRET = "journeys-upstream-client-secret"
UPSTREAM_PASSWORD = "Skrzynka-Pocztowa-Jesień-88"
LOCKOUT = 3
#: An OpenID Connect client that is not the university's own: people are asked for consent.
LIBRARY = "Biblioteka cyfrowa"
LIBRARY_CLIENT_ID = "biblioteka"
HEADER = "album,pesel,birth_date,first_name,last_name,university_email,private_email,role,aliases,entitlements\n"
MAIL_WORKER_INTERVAL = "0.5"


def pesel(birth: str, serial: str) -> str:
    """A valid PESEL for someone born in the 1900s on `birth` (YYMMDD), check digit included."""
    digits = birth + serial
    weights = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)
    return digits + str((10 - sum(w * int(d) for w, d in zip(weights, digits, strict=True)) % 10) % 10)


@dataclass(frozen=True)
class Person:
    key: str
    album: str
    first_name: str
    last_name: str
    login: str  # university e-mail address (what <cas:user> carries)
    password: str
    role: str = "student"
    pesel: str = ""
    private_email: str = ""
    temporary: bool = False
    entitlements: str = "USOSweb"
    #: False: imported from the SIS only (a first-year student who activates the account).
    has_password: bool = True
    console_roles: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


def _people() -> dict[str, Person]:
    """Everyone the journeys need, one per journey and language, so no journey sees another's changes."""
    made: dict[str, Person] = {}
    names = {
        "temporary": ("Olena", "Szewczenko", "Tymczasowe-Morze-Latarnia-42"),
        "wrong": ("Łukasz", "Żółkiewski", "Korsarz-Wisła-1987-Tramwaj"),
        "reset": ("Zofia", "Nałkowska", "Stary-Kasztan-Pod-Oknem-1960"),
        "link": ("Marta", "Nowicka", "Kasztany-Przy-Rynku-Opole-61"),
        "noprov": ("Jan", "Zieliński", "Parowóz-Klarnet-Zima-1954"),
        "locked": ("Agnieszka", "Wróbel", "Granica-Medaliony-Pustka-1935"),
        "staff": ("Hanna", "Pomocna", "Latarnik-Bursztyn-Mewa-2031"),
        "pages": ("Irena", "Sendlerowa", "Zielony-Parasol-Nad-Odrą-1410"),
        "pagestaff": ("Bogdan", "Konsolowy", "Biurko-Kalendarz-Herbata-58"),
        "activate": ("Maria", "Skłodowska", ""),
    }
    n = 0
    for key, (first, last, password) in names.items():
        for lang in LANGS:
            n += 1
            album = f"{'P' if 'staff' in key else ''}{64000 + n}"
            domain = "example.edu.pl" if "staff" in key else "student.example.edu.pl"
            login = f"{key}.{lang}.{album}@{domain}"
            made[f"{key}-{lang}"] = Person(
                key=f"{key}-{lang}", album=album, first_name=first, last_name=last, login=login,
                password=password, role="staff" if "staff" in key else "student",
                pesel=pesel("990314", f"{4200 + n}") if key in ("reset", "pages", "activate") else "",
                private_email=f"{key}.{lang}@example.com",
                temporary=key == "temporary",
                entitlements="" if key == "noprov" else "USOSweb",
                has_password=bool(password),
                console_roles={"staff": ("helpdesk",), "pagestaff": ("helpdesk", "admin")}.get(key, ()))
    return made


PEOPLE = _people()


@dataclass
class World:
    url: str  # the IdP under test
    upstream_url: str
    env: dict[str, str]
    app: RelyingApp
    mail: SmtpSink
    people: dict[str, Person]

    def usosweb(self, path: str = "") -> str:
        return f"{self.app.url}/app/usos/{path}"

    def moodle(self, path: str = "") -> str:
        return f"{self.app.url}/app/moodle/{path}"


def _row(p: Person) -> str:
    birth = "" if p.pesel else "1999-03-14"
    return (f"{p.album},{p.pesel},{birth},{p.first_name},{p.last_name},{p.login},{p.private_email},{p.role},,"
            f"{p.entitlements}\n")


@pytest.fixture(scope="session")
def axe_script() -> Path:
    """axe.min.js, installed from the npm registry when missing (fails, never skips, when it cannot be)."""
    try:
        return axe.ensure_axe()
    except (RuntimeError, OSError) as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def logs() -> Path:
    folder = artifacts_root() / "journeys"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def world(tmp_path_factory, logs: Path) -> Iterator[World]:
    stack = ExitStack()
    procs = []
    try:
        mail = SmtpSink().start()
        stack.callback(mail.stop)
        app = RelyingApp().start()
        stack.callback(app.stop)
        database_env = stack.enter_context(own_database("idp_journeys"))
        base = dict(IDP_ARGON2_TIME_COST="2", IDP_ARGON2_MEMORY_COST="19456", IDP_ARGON2_PARALLELISM="1",
                    IDP_MAIL_SERVER=mail.host, IDP_MAIL_PORT=str(mail.port),
                    IDP_MAIL_WORKER_INTERVAL=MAIL_WORKER_INTERVAL, PYTHONUNBUFFERED="1",
                    CI=os.environ.get("CI", "true"))
        inputs = tmp_path_factory.mktemp("journeys-input")

        # The upstream (the university mail system): its own SQLite instance and cookie names.
        up_dir = tmp_path_factory.mktemp("journeys-upstream")
        up_env = clean_env(IDP_INSTANCE=str(up_dir), IDP_COOKIE_PREFIX="mailidp", **base)
        run_idp(["init"], up_env)
        linkers = [p for p in PEOPLE.values() if p.key.startswith("link-")]
        (inputs / "upstream.csv").write_text(HEADER + "".join(_row(p) for p in linkers), encoding="utf-8")
        run_idp(["users", "import", str(inputs / "upstream.csv")], up_env)
        for p in linkers:
            run_idp(["users", "set-password", p.login], up_env, stdin=UPSTREAM_PASSWORD + "\n")
        up_proc, up_url, _ = serve(up_dir, up_env, logs / "idp-upstream.log", workers=1)
        procs.append(up_proc)

        # The IdP under test.
        instance = tmp_path_factory.mktemp("journeys-instance")
        (instance / "idp.toml").write_text(
            "[[upstream]]\n"
            'name = "mail"\n'
            f'label = "{UPSTREAM_LABEL}"\n'
            f'issuer = "{up_url}"\n'
            'client_id = "idp-journeys"\n'
            f'client_secret = "{UPSTREAM_CLIENT_SECRET}"\n', encoding="utf-8")
        policy = inputs / "policy.toml"
        policy.write_text(f"[login]\nlockout_threshold = {LOCKOUT}\ndelay_after = 0\n", encoding="utf-8")
        env = clean_env(IDP_INSTANCE=str(instance), IDP_POLICY=str(policy), **base, **database_env)
        run_idp(["init"], env)
        (inputs / "people.csv").write_text(HEADER + "".join(_row(p) for p in PEOPLE.values()), encoding="utf-8")
        out = run_idp(["users", "import", str(inputs / "people.csv")], env)
        assert f"added {len(PEOPLE)}" in out, out
        for p in PEOPLE.values():
            if p.has_password:
                args = ["users", "set-password", *(["--temporary"] if p.temporary else []), p.login]
                run_idp(args, env, stdin=p.password + "\n")
            for role in p.console_roles:
                run_idp(["staff", "grant", p.login, role], env)
        (inputs / "services.toml").write_text(
            "[[service]]\n"
            'name = "USOSweb"\n'
            'protocol = "cas"\n'
            f"service_pattern = '^http://127\\.0\\.0\\.1:{app.port}/app/usos/.*$'\n"
            'attributes = ["mail", "album", "given_name", "family_name"]\n'
            "\n[[service]]\n"
            'name = "Moodle"\n'
            'protocol = "cas"\n'
            f"service_pattern = '^http://127\\.0\\.0\\.1:{app.port}/app/moodle/.*$'\n"
            'attributes = ["mail"]\n'
            "requires_entitlement = true\n"
            "\n[[service]]\n"
            f'name = "{LIBRARY}"\n'
            'protocol = "oidc"\n'
            f'client_id = "{LIBRARY_CLIENT_ID}"\n'
            'client_secret = "journeys-library-secret"\n'
            f'redirect_uris = ["{app.url}/app/library/callback"]\n'
            f'post_logout_redirect_uris = ["{app.url}/app/library/"]\n'
            'scopes = ["openid", "profile", "email"]\n'
            'grant_types = ["authorization_code"]\n'
            "first_party = false\n", encoding="utf-8")
        run_idp(["services", "load", str(inputs / "services.toml")], env)
        proc, url, _ = serve(instance, env, logs / "idp-serve.log")
        procs.append(proc)
        app.state.idp_url = url

        # Now that the IdP has its address, register it at the upstream as a client.
        (inputs / "upstream-services.toml").write_text(
            "[[service]]\n"
            'name = "Centralne logowanie"\n'
            'protocol = "oidc"\n'
            'client_id = "idp-journeys"\n'
            f'client_secret = "{UPSTREAM_CLIENT_SECRET}"\n'
            f'redirect_uris = ["{url}/federation/mail/callback"]\n'
            'scopes = ["openid", "profile", "email"]\n'
            "first_party = true\n", encoding="utf-8")
        run_idp(["services", "load", str(inputs / "upstream-services.toml")], up_env)
        yield World(url=url, upstream_url=up_url, env=env, app=app, mail=mail, people=PEOPLE)
    finally:
        for proc in reversed(procs):
            stop_process_group(proc)
        stack.close()


@pytest.fixture
def journey(request, world: World, axe_script: Path):
    """Factory: a Journey for (name, lang) whose IdP pages (the IdP's and the upstream's) axe checks."""
    def make(name: str, lang: str) -> Journey:
        return Journey(name, lang, [world.url, world.upstream_url], axe_script)
    return make
