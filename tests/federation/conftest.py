"""A second IdP, served on 127.0.0.1 in a thread, acting as the upstream OpenID Connect provider.

It has its own SQLite database and cookie prefix: it is another system, as the university mail or
Microsoft 365 would be. The app under test is configured with it as the upstream "mail".
"""
from __future__ import annotations

import re
import socket
import threading
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from werkzeug.serving import make_server

from idp import MIGRATIONS_DIR, create_app
from idp.extensions import db
from tests.conftest import CHEAP_ARGON2, make_app

DOWNSTREAM = "http://127.0.0.1:8000"
CLIENT_ID = "idp-downstream"
CLIENT_SECRET = "upstream-test-secret"
UPSTREAM_PASSWORD = "Upstream-Latarnia-Morze-42"

#: People the upstream knows: (album, university e-mail, first, last).
UPSTREAM_PEOPLE = [
    ("U1", "lukasz.zolkiewski@student.example.edu.pl", "Łukasz", "Żółkiewski"),  # also a local account
    ("U2", "nowy.student@student.example.edu.pl", "Nowy", "Student"),  # not (yet) a local account
]
#: Known upstream only by a private address: the upstream does not vouch for it (email_verified false).
#: The upstream's policy logs people in by university address or album, so this one types the album.
UNVERIFIED = "lukasz.z@example.com"
UNVERIFIED_LOGIN = "U3"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream:
    def __init__(self, app, url: str):
        self.app = app
        self.url = url

    def config(self, **extra) -> dict:
        return {"name": "mail", "label": "Poczta uczelniana", "issuer": self.url, "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET, **extra}


@pytest.fixture(scope="session")
def upstream(tmp_path_factory, signing_keys):
    import shutil

    from flask_migrate import upgrade

    from idp.core import registry
    from tests.factories import create_account

    folder = tmp_path_factory.mktemp("upstream-instance")
    shutil.copy2(signing_keys, folder / signing_keys.name)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        from tests.conftest import _strip_deployment_env

        _strip_deployment_env(mp)
        app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{folder / 'upstream.sqlite3'}",
                          "BASE_URL": url, "COOKIE_PREFIX": "upstream", **CHEAP_ARGON2}, instance=folder)
    with app.app_context():
        upgrade(directory=str(MIGRATIONS_DIR))
        registry.replace_all([{
            "name": "Downstream IdP", "protocol": "oidc", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "redirect_uris": [f"{DOWNSTREAM}/federation/mail/callback"], "scopes": ["openid", "profile", "email"],
            "first_party": True}])
        for album, email, first, last in UPSTREAM_PEOPLE:
            create_account(album, first_name=first, last_name=last, university_email=email, private_email=None,
                           aliases=(), password=UPSTREAM_PASSWORD, pesel=None)
        create_account("U3", university_email=None, private_email=UNVERIFIED, aliases=(),
                       password=UPSTREAM_PASSWORD, pesel=None)
        db.session.remove()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Upstream(app, url)
    server.shutdown()


@pytest.fixture
def app(request, database_url, instance_dir, upstream):
    extra = {}
    for marker in request.node.iter_markers("upstream"):
        extra.update(marker.kwargs)
    yield from make_app(request, database_url, instance_dir, {"UPSTREAM": [upstream.config(**extra)]})


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, "no CSRF token on the upstream's page"
    return match.group(1)


def upstream_login(client, upstream: Upstream, email: str, password: str = UPSTREAM_PASSWORD, *,
                   start: str = "/federation/mail/start", browser: requests.Session | None = None):
    """Walk a browser through the upstream: start here, log in there, come back; the callback's response.

    `browser` keeps the upstream's cookies between calls (its SSO session), like a real browser.
    """
    response = client.get(start)
    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith(upstream.url), location
    browser = browser or requests.Session()
    for _ in range(10):
        page = browser.get(location, allow_redirects=False, timeout=10)
        if page.status_code in (301, 302, 303):
            location = urljoin(location, page.headers["Location"])
            if location.startswith(DOWNSTREAM):
                parts = urlsplit(location)
                return client.get(parts.path + "?" + parts.query)
            continue
        assert page.status_code == 200, page.text[:500]
        form_action = location
        post = browser.post(form_action, data={"csrf_token": _csrf(page.text), "username": email,
                                               "password": password}, allow_redirects=False, timeout=10)
        assert post.status_code in (302, 303), post.text[:800]
        location = urljoin(form_action, post.headers["Location"])
        if location.startswith(DOWNSTREAM):
            parts = urlsplit(location)
            return client.get(parts.path + "?" + parts.query)
    raise AssertionError("the upstream never sent the browser back")
