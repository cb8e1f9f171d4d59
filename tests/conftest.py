"""Fixtures: app (cheap argon2, per-test config via markers), client, runner, factories, callback server.

The database is SQLite by default; set IDP_TEST_DATABASE_URL (e.g. postgresql://127.0.0.1/test) to run
the same suite on PostgreSQL. Each test run gets its own PostgreSQL schema; rows are wiped between tests.
IDP_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0) puts every app's short-lived state in Redis, under a key
prefix of its own.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import has_app_context
from flask.testing import FlaskClient

from idp import MIGRATIONS_DIR, create_app
from idp.extensions import db
from tests.browser import browser  # noqa: F401 (the session's one Chromium, for every browser test)
from tests.databases import postgres_base, postgres_schema, redis_settings

CHEAP_ARGON2 = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 8, "ARGON2_PARALLELISM": 1}
USOSWEB = "https://usosweb.example.edu.pl/kontroler.php?_action=news/default"
SERVICES = [
    {"name": "USOSweb", "protocol": "cas", "service_pattern": r"^https://usosweb\.example\.edu\.pl/.*",
     "attributes": ["mail", "album", "given_name", "family_name", "role", "aliases"]},
    {"name": "Moodle", "protocol": "cas", "service_pattern": r"^https://moodle\.example\.edu\.pl/.*",
     "attributes": ["mail"], "username_attribute": "album"},
]


def _strip_deployment_env(monkeypatch) -> None:
    for name in list(os.environ):
        if name.startswith("IDP_") and name not in ("IDP_TEST_DATABASE_URL", "IDP_TEST_REDIS_URL"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _no_deployment_env(monkeypatch):
    """A developer's (or the Makefile's) IDP_* settings must not change what tests observe."""
    _strip_deployment_env(monkeypatch)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> Iterator[str]:
    """One database for the run, schema created by the real Alembic migrations."""
    base = postgres_base()
    if not base:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
        _migrate(url, tmp_path_factory)
        yield url
        return
    with postgres_schema(base, "idp_test") as url:
        _migrate(url, tmp_path_factory)
        yield url


def _migrate(url: str, tmp_path_factory) -> None:
    from flask_migrate import upgrade

    with pytest.MonkeyPatch.context() as mp:
        _strip_deployment_env(mp)
        app = create_app({"TESTING": True, "DATABASE_URL": url, **CHEAP_ARGON2},
                         instance=tmp_path_factory.mktemp("migrate-instance"))
    with app.app_context():
        upgrade(directory=str(MIGRATIONS_DIR))
        db.engine.dispose()


@pytest.fixture(scope="session")
def signing_keys(tmp_path_factory) -> Path:
    """One generation of OIDC signing keys per run (RSA generation is slow), copied into each instance."""
    from idp.core.clock import utcnow
    from idp.oidc.keys import KeyStore

    folder = tmp_path_factory.mktemp("keys")
    KeyStore(folder).ensure(utcnow())
    return folder / "oidc-keys.json"


@pytest.fixture
def instance_dir(tmp_path, signing_keys) -> Path:
    folder = tmp_path / "instance"
    folder.mkdir()
    shutil.copy2(signing_keys, folder / signing_keys.name)
    return folder


@pytest.fixture
def app(request, database_url, instance_dir):
    yield from make_app(request, database_url, instance_dir)


def make_app(request, database_url: str, instance_dir: Path, extra: dict | None = None):
    """The app under test, in an app context, wiped afterwards (a folder's conftest may add settings)."""
    overrides = {"TESTING": True, "DATABASE_URL": database_url, "BASE_URL": "http://127.0.0.1:8000",
                 **redis_settings(), **CHEAP_ARGON2, **(extra or {})}
    for marker in request.node.iter_markers("settings"):
        overrides.update(marker.kwargs)
    policy = {}
    for marker in request.node.iter_markers("policy"):
        policy.update(marker.kwargs)
    if policy:
        overrides["POLICY_OVERRIDES"] = {k.replace("__", "."): v for k, v in policy.items()}
    app = create_app(overrides, instance=instance_dir)
    with app.app_context():
        from idp.core import registry

        registry.replace_all([dict(s) for s in SERVICES])
        yield app
        db.session.rollback()
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


class FreshContextClient(FlaskClient):
    """Each request gets its own app context (its own `g` and DB session), as in production.

    Without this, requests would reuse the fixture's long-lived app context and share `g` — the cached
    locale, the CSP nonce — between requests, which no real deployment does.
    """

    def open(self, *args, **kwargs):
        with self.application.app_context():
            response = super().open(*args, **kwargs)
        if has_app_context():
            db.session.expire_all()  # the test's own session re-reads what the request changed
        return response


@pytest.fixture
def client(app):
    app.test_client_class = FreshContextClient
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def person(app):
    """A student with a known password (see factories.create_account)."""
    from tests.factories import create_account

    return create_account()


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def cas_login(client, username: str, password: str, service: str | None = USOSWEB, *, warn: bool = False,
              extra: dict | None = None):
    """Fill and post the login form the way a browser does (GET the form, POST it with its token)."""
    params = {"service": service} if service else {}
    params.update(extra or {})
    page = client.get("/cas/login", query_string=params)
    data = {"csrf_token": csrf_token(page.get_data(as_text=True)), "username": username, "password": password}
    if service:
        data["service"] = service
    if warn:
        data["warn"] = "y"
    return client.post("/cas/login", query_string=params, data=data)


def ticket_from(response) -> str:
    location = response.headers["Location"]
    return parse_qs(urlsplit(location).query)["ticket"][0]


class _Recorder(BaseHTTPRequestHandler):
    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.server.calls.append({"method": self.command, "path": self.path, "body": body,
                                  "form": parse_qs(body), "query": parse_qs(urlsplit(self.path).query)})
        self.send_response(self.server.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = _handle

    def log_message(self, *args):
        pass


@pytest.fixture
def callback_server():
    """An HTTP server on 127.0.0.1 that records every request (SLO POSTs, PGT callbacks)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.calls = []
    server.status = 200
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# --- time ----------------------------------------------------------------------------------------------

class Clock:
    """Frozen time that moves only when told."""

    def __init__(self, start: dt.datetime):
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock(monkeypatch, app) -> Clock:
    """Replace every module's `utcnow` (each imported it by name: idp.core.clock, idp.cas.views, sso …)."""
    from idp.core import clock as clock_mod

    original = clock_mod.utcnow
    fake = Clock(original().replace(microsecond=0))
    monkeypatch.setattr(clock_mod, "utcnow", fake)
    for name, module in list(sys.modules.items()):
        if (name.startswith("idp.") or name.startswith("tests.")) and getattr(module, "utcnow", None) is original:
            monkeypatch.setattr(module, "utcnow", fake)
    return fake
