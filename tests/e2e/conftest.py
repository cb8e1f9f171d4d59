"""End-to-end fixtures: a real `idp serve` process, two relying apps, headless Chromium (Playwright).

The apps: a CAS app (relying_app.py, python-cas) and an "e-learning" OpenID Connect client
(oidc_app.py, the `oic` library), both registered in the IdP's service registry.

The IdP is set up through its command line only (DESIGN.md section 2): `idp init`, `idp users import`,
`idp services load`, `idp users set-password`, `idp serve`. Nothing here imports the application.
The served IdP sends its mail to an SMTP sink (aiosmtpd, tests/smtp_sink.py) on 127.0.0.1; the outbox
worker inside `idp serve` delivers every half second.
Every step has a time limit; the server's process group is always terminated at teardown.
"""
from __future__ import annotations

import faulthandler
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, STEP_TIMEOUT_MS  # noqa: F401 (used here and by others)
from tests.databases import postgres_base, postgres_schema, redis_settings
from tests.e2e.oidc_app import CLIENT_ID, CLIENT_SECRET, SCOPES, OidcApp
from tests.e2e.relying_app import RelyingApp
from tests.smtp_sink import SmtpSink

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "e2e"
#: Limit for each `idp` command and for the server to start answering.
COMMAND_TIMEOUT = 30
START_TIMEOUT = 20
#: Each test as a whole (the session's set-up is bounded separately, step by step). Past it the test
#: fails with TimeoutError; should even that not unwind, the run is ended with every thread's stack.
TEST_TIMEOUT = int(os.environ.get("E2E_TEST_TIMEOUT", "120"))
HARD_TIMEOUT = TEST_TIMEOUT + 60

SERVICE_NAME = "Aplikacja E2E"
OIDC_SERVICE_NAME = "e-learning"
PASSWORD = "Kwitnące-Jabłonie-Nad-Wisłą-73"
STUDENT = {
    "album": "12345",
    "pesel": "04231512341",
    "first_name": "Łukasz",
    "last_name": "Żółkiewski",
    # Mixed case on purpose: <cas:user> must carry the canonical (lower-case) address.
    "university_email": "Lukasz.Zolkiewski@Student.Example.edu.pl",
    "private_email": "lukasz.z@example.com",
    "role": "student",
    "aliases": "s12345@student.example.edu.pl",
}
CANONICAL_USER = "lukasz.zolkiewski@student.example.edu.pl"
#: Seconds between the outbox worker's rounds inside `idp serve` (default 5).
MAIL_WORKER_INTERVAL = "0.5"


@dataclass
class Idp:
    url: str
    port: int
    instance: Path
    log: Path
    process: subprocess.Popen
    #: The environment the instance was set up with: more `idp` commands (run_idp) against the same database.
    env: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def idp_executable() -> Path:
    exe = Path(sys.executable).parent / "idp"
    if not exe.exists():
        pytest.fail(f"console script {exe} not found: install the project first (pip install -e '.[test]')",
                    pytrace=False)
    return exe


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any IDP_* setting (a developer's own must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(extra)
    return env


def run_idp(args: list[str], env: dict[str, str], *, stdin: str | None = None) -> str:
    cmd = [str(idp_executable()), *args]
    try:
        done = subprocess.run(cmd, env=env, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                              capture_output=True, text=True, encoding="utf-8", timeout=COMMAND_TIMEOUT,
                              cwd=env["IDP_INSTANCE"])
    except subprocess.TimeoutExpired:
        pytest.fail(f"`idp {' '.join(args)}` did not finish within {COMMAND_TIMEOUT} s", pytrace=False)
    if done.returncode != 0:
        pytest.fail(f"`idp {' '.join(args)}` exited {done.returncode}\nstdout:\n{done.stdout}\n"
                    f"stderr:\n{done.stderr}", pytrace=False)
    return done.stdout


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def _write_inputs(folder: Path, app: RelyingApp, elearning: OidcApp) -> tuple[Path, Path]:
    people = folder / "people.csv"
    columns = list(STUDENT)
    people.write_text(",".join(columns) + "\n" + ",".join(STUDENT[c] for c in columns) + "\n", encoding="utf-8")
    services = folder / "services.toml"
    services.write_text(
        "[[service]]\n"
        f'name = "{SERVICE_NAME}"\n'
        'protocol = "cas"\n'
        f"service_pattern = '^http://127\\.0\\.0\\.1:{app.port}/app/.*$'\n"
        'attributes = ["mail", "album", "given_name", "family_name"]\n'
        f'logout_url = "{app.url}/slo"\n'
        "\n"
        "[[service]]\n"
        f'name = "{OIDC_SERVICE_NAME}"\n'
        'protocol = "oidc"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret = "{CLIENT_SECRET}"\n'
        f"redirect_uris = {_toml_list([elearning.redirect_uri])}\n"
        f"scopes = {_toml_list(SCOPES)}\n"
        'grant_types = ["authorization_code", "refresh_token"]\n'
        f"post_logout_redirect_uris = {_toml_list([elearning.post_logout_redirect_uri])}\n"
        f'backchannel_logout_uri = "{elearning.backchannel_logout_uri}"\n'
        "first_party = true\n",
        encoding="utf-8")
    return people, services


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the whole group (gunicorn master and workers), SIGKILL whatever is left after 10 s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    try:  # workers may outlive the master by a moment; never leave them behind
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def serve(instance: Path, env: dict[str, str], log: Path, *, workers: int = 2,
          base_url: str | None = None) -> tuple[subprocess.Popen, str, int]:
    """Start `idp serve` for an instance on a free port of 127.0.0.1 and wait until it answers.
    Its IDP_BASE_URL is its own address, or `base_url` (one node of several behind a load balancer,
    test_multinode.py). The caller stops it with stop_process_group."""
    proc = None
    for _attempt in range(3):  # a free port can be taken between choosing and binding it
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        # gunicorn >= 25 opens a control socket at $XDG_RUNTIME_DIR/gunicorn.ctl, else one shared
        # ~/.gunicorn/gunicorn.ctl that every other server on the machine would also take over.
        serve_env = dict(env, IDP_BASE_URL=base_url or url, XDG_RUNTIME_DIR=str(instance))
        with log.open("w", encoding="utf-8") as fh:
            proc = subprocess.Popen(
                [str(idp_executable()), "serve", "--host", "127.0.0.1", "--port", str(port),
                 "--workers", str(workers)],
                env=serve_env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                cwd=str(instance), start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers(f"{url}/cas/login"):
                break
            time.sleep(0.2)
        if proc.poll() is None and _answers(f"{url}/cas/login"):
            return proc, url, port
        stop_process_group(proc)
        if "Address already in use" not in _tail(log, 200):
            pytest.fail(f"`idp serve` did not answer on {url}/cas/login within {START_TIMEOUT} s "
                        f"(exit code {proc.returncode}); last log lines:\n{_tail(log)}", pytrace=False)
    pytest.fail(f"`idp serve` could not bind a free port; last log lines:\n{_tail(log)}", pytrace=False)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def relying_app() -> Iterator[RelyingApp]:
    app = RelyingApp().start()
    yield app
    app.stop()


@pytest.fixture(scope="session")
def elearning_app() -> Iterator[OidcApp]:
    app = OidcApp().start()
    yield app
    app.stop()


@pytest.fixture(autouse=True)
def time_limit(request) -> Iterator[None]:
    """Bound each test's own run time (SIGALRM in the main thread), with a hard stop behind it."""
    def expired(_signum, _frame):
        raise TimeoutError(f"{request.node.nodeid} ran longer than {TEST_TIMEOUT} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIMEOUT)
    faulthandler.dump_traceback_later(HARD_TIMEOUT, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def own_database(prefix: str) -> Iterator[dict[str, str]]:
    """IDP_DATABASE_URL for one served IdP: SQLite in its instance by default; with IDP_TEST_DATABASE_URL,
    a PostgreSQL schema of its own, dropped afterwards; with IDP_TEST_REDIS_URL, Redis under a key prefix
    of its own. Every `idp serve` of the suite needs its own:
    `idp services load` replaces the whole registry of the database it is given."""
    redis = redis_settings()
    redis_env = {"IDP_REDIS_URL": redis["REDIS_URL"], "IDP_REDIS_PREFIX": redis["REDIS_PREFIX"]} if redis else {}
    base = postgres_base()
    if not base:
        yield redis_env
        return
    with postgres_schema(base, prefix) as url:
        yield {"IDP_DATABASE_URL": url, **redis_env}


@pytest.fixture(scope="session")
def database_env() -> Iterator[dict[str, str]]:
    """The database of the shared `idp` fixture."""
    with own_database("idp_e2e") as env:
        yield env


@pytest.fixture(scope="session")
def mail_sink() -> Iterator[SmtpSink]:
    """The SMTP server the served IdP sends to, on a free port of 127.0.0.1. A test may stop it and start
    it again on the same port (the SMTP server down, then back): it must leave it running."""
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def idp(tmp_path_factory, relying_app: RelyingApp, elearning_app: OidcApp, artifacts: Path,
        database_env: dict[str, str], mail_sink: SmtpSink) -> Iterator[Idp]:
    """A fresh instance set up with the CLI and served by `idp serve` on a free port of 127.0.0.1."""
    instance = tmp_path_factory.mktemp("idp-instance")
    people, services = _write_inputs(tmp_path_factory.mktemp("idp-input"), relying_app, elearning_app)
    env = clean_env(IDP_INSTANCE=str(instance), CI=os.environ.get("CI", "true"),
                    # The floor the app accepts outside tests (ASVS): keeps each login cheap.
                    IDP_ARGON2_TIME_COST="2", IDP_ARGON2_MEMORY_COST="19456", IDP_ARGON2_PARALLELISM="1",
                    IDP_MAIL_SERVER=mail_sink.host, IDP_MAIL_PORT=str(mail_sink.port),
                    IDP_MAIL_WORKER_INTERVAL=MAIL_WORKER_INTERVAL, PYTHONUNBUFFERED="1", **database_env)
    run_idp(["init"], env)
    out = run_idp(["users", "import", str(people)], env)
    assert "added 1" in out, out
    out = run_idp(["services", "load", str(services)], env)
    assert SERVICE_NAME in out and OIDC_SERVICE_NAME in out, out
    out = run_idp(["users", "set-password", STUDENT["aliases"]], env, stdin=PASSWORD + "\n")
    assert "password set for 12345" in out, out

    log = artifacts / "idp-serve.log"
    proc = None
    try:
        proc, url, port = serve(instance, env, log)
        relying_app.state.idp_url = url
        elearning_app.state.issuer = url  # the IdP's issuer is its base URL; oic discovers the rest
        yield Idp(url=url, port=port, instance=instance, log=log, process=proc, env=env)
    finally:
        if proc is not None:
            stop_process_group(proc)


@pytest.fixture
def new_context(browser):
    """Factory for fresh browser contexts (own cookie jar), all closed at teardown."""
    made = []

    def make(**kwargs):
        ctx = browser.new_context(**kwargs)
        ctx.set_default_timeout(STEP_TIMEOUT_MS)
        ctx.set_default_navigation_timeout(STEP_TIMEOUT_MS)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()


# --- more people, each with a password set through the command line -------------------------------------

@dataclass
class Person:
    album: str
    login: str  # the university e-mail address, lower case (what <cas:user> carries)
    password: str
    first_name: str
    last_name: str


_people_made = 0


@pytest.fixture
def make_person(idp: Idp, tmp_path: Path):
    """Factory: a new person imported with `idp users import` and given a password with
    `idp users set-password` (`--temporary` when asked), so each test changes only its own person's password."""
    def make(password: str, *, temporary: bool = False, first_name: str = "Grażyna",
             last_name: str = "Wiśniewska", pesel: str = "") -> Person:
        global _people_made
        _people_made += 1
        album = f"{77000 + _people_made}"
        login = f"osoba{album}@student.example.edu.pl"
        people = tmp_path / f"people-{album}.csv"
        birth_date = "" if pesel else "1999-03-14"  # with a PESEL, the import takes the date it encodes
        people.write_text("album,pesel,birth_date,first_name,last_name,university_email,private_email,role,aliases\n"
                          f"{album},{pesel},{birth_date},{first_name},{last_name},{login},,student,\n",
                          encoding="utf-8")
        out = run_idp(["users", "import", str(people)], idp.env)
        assert "added 1" in out, out
        args = ["users", "set-password", *(["--temporary"] if temporary else []), login]
        out = run_idp(args, idp.env, stdin=password + "\n")
        assert f"password set for {album}" in out, out
        return Person(album=album, login=login, password=password, first_name=first_name, last_name=last_name)

    return make
