"""A tiny CAS relying app on 127.0.0.1 for the end-to-end tests.

It behaves like a real CAS client would: a page requested without a ticket answers 302 to the IdP's
/cas/login?service=<this page>; a page requested with ?ticket=ST-... validates the ticket server-side with
the python-cas client library (CAS 3.0, /p3/serviceValidate) and shows who logged in. POST /slo receives
the IdP's back-channel single-logout request and ends the app session whose ticket it names.

Everything it sees is recorded (validations, SLO posts) so a test can assert on it.
"""
from __future__ import annotations

import html
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, quote, urlencode, urlsplit, urlunsplit

from cas import CASClient, CASClientV3


@dataclass
class Validation:
    """One ticket the app received and what the IdP said about it."""
    service_url: str
    ticket: str
    user: str | None
    attributes: dict | None
    error: str | None = None


@dataclass
class SloPost:
    path: str
    content_type: str
    logout_request: str | None
    #: The ticket the app matched this request to (python-cas verify_logout_request), or None.
    matched_ticket: str | None


@dataclass
class AppState:
    idp_url: str = ""
    validations: list[Validation] = field(default_factory=list)
    slo_posts: list[SloPost] = field(default_factory=list)
    #: Live app sessions: ticket -> user. SLO removes the entry whose ticket it names.
    sessions: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def service_url_of(url: str) -> str:
    """The service URL the IdP redirected to: the request URL without its `ticket` parameter."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "ticket"]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


class _Handler(BaseHTTPRequestHandler):
    server: RelyingApp
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep the test output clean
        pass

    def _send(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server naming)
        parts = urlsplit(self.path)
        if not parts.path.startswith("/app/"):
            self._send(404, "<p>not found</p>")
            return
        url = f"{self.server.url}{self.path}"
        ticket = parse_qs(parts.query).get("ticket", [None])[0]
        service = service_url_of(url)
        if not ticket:
            login = f"{self.server.state.idp_url}/cas/login?service={quote(service, safe='')}"
            self._send(302, "", {"Location": login})
            return
        client = CASClient(version=3, server_url=self.server.state.idp_url + "/cas/", service_url=service)
        try:
            user, attributes, _pgtiou = client.verify_ticket(ticket)
            error = None
        except Exception as exc:  # the page must say what went wrong, not hang the browser
            user, attributes, error = None, None, f"{type(exc).__name__}: {exc}"
        finally:
            client.session.close()
        with self.server.state.lock:
            self.server.state.validations.append(Validation(service, ticket, user, attributes, error))
            if user:
                self.server.state.sessions[ticket] = user
        if not user:
            self._send(403, f"<h1>Ticket rejected</h1><p id='error'>{html.escape(error or 'no user')}</p>")
            return
        attrs = attributes or {}
        name = f"{attrs.get('given_name', '')} {attrs.get('family_name', '')}".strip()
        self._send(200, (
            "<!doctype html><html lang='pl'><head><meta charset='utf-8'><title>E2E app</title></head><body>"
            f"<h1 id='welcome'>Witaj, {html.escape(name)}</h1>"
            f"<p>User: <span id='user'>{html.escape(user)}</span></p>"
            f"<p>Album: <span id='album'>{html.escape(str(attrs.get('album', '')))}</span></p>"
            f"<p>Path: <span id='path'>{html.escape(parts.path)}</span></p>"
            "</body></html>"))

    def do_POST(self):  # noqa: N802
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        if parts.path != "/slo":
            self._send(404, "<p>not found</p>")
            return
        logout_request = parse_qs(body).get("logoutRequest", [None])[0]
        matched = None
        with self.server.state.lock:
            if logout_request:
                for ticket in list(self.server.state.sessions):
                    if CASClientV3.verify_logout_request(logout_request, ticket):
                        matched = ticket
                        del self.server.state.sessions[ticket]
                        break
            self.server.state.slo_posts.append(SloPost(self.path, self.headers.get("Content-Type", ""),
                                                       logout_request, matched))
        self._send(200, "ok")


class RelyingApp(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = AppState()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, name="e2e-relying-app", daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> RelyingApp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
