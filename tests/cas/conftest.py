"""Helpers for the CAS HTTP tests: a controllable clock, extra registered services, app servers that
misbehave on purpose, and parsers for what a relying app reads (CAS XML/JSON, SAML logoutRequest)."""
from __future__ import annotations

import json
import re
import socket
import threading
import time
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import SERVICES, USOSWEB, cas_login, csrf_token, ticket_from
from tests.factories import PASSWORD

CAS_NS = "http://www.yale.edu/tp/cas"
NS = {"cas": CAS_NS}
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
MOODLE = "https://moodle.example.edu.pl/course/view.php?id=7"
USER = "lukasz.zolkiewski@student.example.edu.pl"
VALIDATE_XML_ENDPOINTS = ["/cas/serviceValidate", "/cas/proxyValidate", "/cas/p3/serviceValidate",
                          "/cas/p3/proxyValidate"]
TICKET_RE = re.compile(r"^[A-Za-z0-9-]+$")


# --- the browser ---------------------------------------------------------------------------------------

@pytest.fixture
def client(client):
    """The root conftest's browser (a fresh app context per request), preferring English, so
    assertions can use the English wording."""
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def browser(app):
    """browser() -> another, independent browser (own cookie jar), English like `client`."""
    from tests.conftest import FreshContextClient

    def make(lang: str | None = "en"):
        c = FreshContextClient(app, app.response_class, use_cookies=True)
        if lang:
            c.environ_base["HTTP_ACCEPT_LANGUAGE"] = lang
        return c

    return make


def tgc(client, name: str = "idp_tgc", domain: str = "localhost") -> str | None:
    cookie = client.get_cookie(name, domain=domain)
    return cookie.value if cookie else None


def login_ticket(client, service: str = USOSWEB, username: str = USER, password: str = PASSWORD, **kw) -> str:
    """Log in with the form (fresh credentials) and return the ticket the app receives."""
    r = cas_login(client, username, password, service, **kw)
    assert r.status_code == 302, r.get_data(as_text=True)[:2000]
    return ticket_from(r)


def sso_ticket(client, service: str = USOSWEB, **params) -> str:
    """A ticket issued from the existing SSO session (no credentials typed)."""
    r = client.get("/cas/login", query_string={"service": service, **params})
    assert r.status_code == 302, r.get_data(as_text=True)[:2000]
    return ticket_from(r)


def page_error(html: str) -> str | None:
    """The text of the error box on a page, whitespace-normalised."""
    m = re.search(r'<div class="alert"[^>]*>(.*?)</div>', html, re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", m.group(1)).split()) if m else None


def is_login_form(html: str) -> bool:
    return 'name="password"' in html and 'name="username"' in html


# --- what a relying app reads -------------------------------------------------------------------------

def cas_xml(response) -> ET.Element:
    """Parse a CAS XML answer with xml.etree and check the envelope and namespace."""
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype in {"application/xml", "text/xml"}
    root = ET.fromstring(response.get_data())
    assert root.tag == f"{{{CAS_NS}}}serviceResponse"
    assert len(root) == 1, "exactly one of authenticationSuccess/Failure, proxySuccess/Failure"
    return root


def failure_code(response) -> str | None:
    """The authenticationFailure code (XML or JSON), or None on success."""
    if response.mimetype == "application/json":
        body = response.get_json()["serviceResponse"]
        fail = body.get("authenticationFailure")
        return fail["code"] if fail else None
    root = cas_xml(response)
    fail = root.find("cas:authenticationFailure", NS)
    if fail is None:
        assert root.find("cas:authenticationSuccess", NS) is not None
        return None
    assert fail.get("code")
    assert (fail.text or "").strip(), "a failure should describe what went wrong"
    return fail.get("code")


def success(response) -> ET.Element:
    root = cas_xml(response)
    ok = root.find("cas:authenticationSuccess", NS)
    assert ok is not None, response.get_data(as_text=True)
    return ok


def cas_json(response) -> dict:
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    data = json.loads(response.get_data(as_text=True))
    assert list(data) == ["serviceResponse"]
    return data["serviceResponse"]


def validate(client, endpoint: str, ticket: str | None, service: str | None = USOSWEB, **params):
    query = {k: v for k, v in {"ticket": ticket, "service": service, **params}.items() if v is not None}
    return client.get(endpoint, query_string=query)


def logout_request(body: str) -> ET.Element:
    """The SAML LogoutRequest inside a back-channel POST body (form field logoutRequest)."""
    form = parse_qs(body)
    assert list(form) == ["logoutRequest"], form
    root = ET.fromstring(form["logoutRequest"][0])
    assert root.tag == f"{{{SAMLP}}}LogoutRequest"
    return root


# --- time: the `clock` fixture and Clock live in tests/conftest.py ---------------------------------------


# --- the registry --------------------------------------------------------------------------------------

@pytest.fixture
def register(app):
    """register(*entries): the conftest SERVICES plus extra ones, the way `idp services load` would."""
    from idp.core import registry

    def _register(*entries: dict) -> None:
        registry.replace_all([dict(s) for s in SERVICES] + [dict(e) for e in entries])

    return _register


def service_for(base_url: str, name: str, path: str = "/", **extra) -> dict:
    """A CAS service whose URLs live under base_url + path (e.g. a callback server)."""
    return {"name": name, "protocol": "cas", "service_pattern": "^" + re.escape(base_url + path) + ".*",
            **extra}


# --- relying-app servers that misbehave on purpose -------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    def _handle(self):
        srv = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        srv.calls.append({"method": self.command, "path": self.path, "body": body, "form": parse_qs(body),
                          "query": parse_qs(urlsplit(self.path).query), "at": time.monotonic(),
                          "content_type": self.headers.get("Content-Type")})
        try:
            if srv.delay:
                time.sleep(srv.delay)
            if srv.trickle:
                # Keep the connection busy: one byte of headers at a time, never finishing in time.
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                self.wfile.flush()
                end = time.monotonic() + srv.trickle
                while time.monotonic() < end:
                    self.wfile.write(b"X-Slow: a\r\n")
                    self.wfile.flush()
                    time.sleep(0.1)
                return
            self.send_response(srv.status)
            if srv.location:
                query = urlsplit(self.path).query
                keep = srv.location.endswith("?") and query
                self.send_header("Location", srv.location + query if keep else srv.location)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except OSError:
            pass  # the IdP gave up on us, as it should

    do_GET = do_POST = _handle

    def log_message(self, *args):
        pass


class AppServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.calls: list[dict] = []
        self.status = 200
        self.delay = 0.0
        self.trickle = 0.0
        self.location: str | None = None
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address):
        pass


@pytest.fixture
def app_server():
    """make() -> a new recording server on 127.0.0.1 (status, delay, trickle, location are settable;
    a location ending in "?" gets the request's own query string appended, as a real app would)."""
    servers = []

    def make() -> AppServer:
        server = AppServer()
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def callback_server(app_server):
    """The root conftest's callback_server, same interface (url, calls with method/path/body/form/query,
    status), plus AppServer's knobs; it stops in 50 ms instead of serve_forever's default 0.5 s poll."""
    return app_server()


@pytest.fixture
def dead_url() -> str:
    """A loopback URL nobody listens on (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def post_warn_ok(client, warn_page_html: str, service: str, **extra):
    data = {"csrf_token": csrf_token(warn_page_html), "service": service, "warn_ok": "1", **extra}
    return client.post("/cas/login", data=data)


def audit_events(action: str | None = None) -> list:
    from idp.extensions import db
    from idp.models import AuditEvent

    query = db.select(AuditEvent).order_by(AuditEvent.id)
    if action:
        query = query.where(AuditEvent.action == action)
    db.session.expire_all()
    return list(db.session.scalars(query))
