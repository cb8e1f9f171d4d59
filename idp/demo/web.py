"""What the demo's small web apps (USOSweb, e-learning, the mail viewer) share: language, page layout,
server-side sessions, and a threaded HTTP server on a socket bound beforehand.

They are stand-ins for other people's software, so they import nothing of the IdP: they talk to it only
over HTTP, as a real relying app would. Their strings go through the IdP's own catalogue (Polish by
default, English with ?lang=en or the browser's language).
"""
from __future__ import annotations

import datetime as dt
import json
import secrets
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, g, render_template_string, request
from flask_babel import Babel, get_locale
from flask_babel import gettext as _
from markupsafe import Markup
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"
LANGUAGES = ("pl", "en")
#: One cookie for the three demo apps: browsers share cookies between ports of one host, so choosing a
#: language in one demo app chooses it in the others.
LANG_COOKIE = "demo_lang"

LAYOUT = """<!doctype html>
<html lang="{{ lang }}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} — {{ app_name }}</title>
{% if refresh %}<meta http-equiv="refresh" content="{{ refresh }}">{% endif %}
<style>
 body { font-family: system-ui, sans-serif; margin: 0; color: #1d1d1f; background: #f6f7f9; }
 header { background: {{ colour }}; color: #fff; padding: .8rem 1.5rem; display: flex; gap: 1.5rem;
          align-items: baseline; flex-wrap: wrap; }
 header strong { font-size: 1.3rem; }
 header a { color: #fff; }
 main { max-width: 60rem; margin: 1.5rem auto; padding: 0 1.5rem; }
 table { border-collapse: collapse; background: #fff; }
 th, td { text-align: left; padding: .35rem .8rem; border-bottom: 1px solid #ddd; vertical-align: top; }
 .button { display: inline-block; background: {{ colour }}; color: #fff; padding: .5rem 1rem;
           border-radius: .3rem; text-decoration: none; }
 .note { color: #555; }
 pre { white-space: pre-wrap; background: #fff; padding: 1rem; border: 1px solid #ddd; }
 nav.lang { margin-left: auto; }
</style></head>
<body>
<header><strong>{{ app_name }}</strong><span>{{ tagline }}</span>
{% for label, url in links if url != request.host_url %}<a href="{{ url }}">{{ label }}</a>{% endfor %}
<nav class="lang" aria-label="{{ language_label }}">
{% for code, label in [("pl", "Polski"), ("en", "English")] %}{% if code != lang %}
<a href="?lang={{ code }}" lang="{{ code }}">{{ label }}</a>{% endif %}{% endfor %}</nav></header>
<main>
<h1>{{ title }}</h1>
{{ body }}
</main></body></html>"""


def as_text(value: Any) -> str:
    """A claim or attribute value as a person reads it: lists joined, true/false/null as in JSON."""
    if isinstance(value, (list, tuple)):
        return ", ".join(as_text(v) for v in value)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return str(value)


def as_time(seconds: Any) -> str:
    """A JWT NumericDate with the UTC time it means (exp, iat, auth_time)."""
    try:
        moment = dt.datetime.fromtimestamp(int(seconds), dt.UTC)
    except (TypeError, ValueError, OverflowError):
        return as_text(seconds)
    return f"{seconds} ({moment:%Y-%m-%d %H:%M:%S} UTC)"


def select_locale() -> str:
    """?lang= (remembered in a cookie), the cookie, the browser's languages, else Polish."""
    asked = request.args.get("lang")
    if asked in LANGUAGES:
        g.demo_lang = asked
        return asked
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in LANGUAGES:
        return cookie
    return request.accept_languages.best_match(LANGUAGES) or "pl"


def make_app(import_name: str, *, session_cookie: str) -> Flask:
    """A Flask app with its own session cookie name, Babel on the IdP's catalogue, and no caching."""
    app = Flask(import_name)
    app.config.update(SECRET_KEY=secrets.token_bytes(32), SESSION_COOKIE_NAME=session_cookie,
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      BABEL_DEFAULT_LOCALE="pl", BABEL_TRANSLATION_DIRECTORIES=str(TRANSLATIONS))
    Babel(app, locale_selector=select_locale)
    app.jinja_env.filters["text"] = as_text

    @app.after_request
    def _headers(response):
        lang = g.get("demo_lang")
        if lang:
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 24 * 3600, samesite="Lax", httponly=True)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    return app


def page(app_name: str, tagline: str, colour: str, title: str, body: str, *, refresh: int | None = None,
         links: list[tuple[str, str]] | None = None, **context: Any) -> str:
    """A whole page: `body` is a Jinja snippet rendered with `context`, then put into the layout."""
    inner = Markup(render_template_string(body, **context))  # already escaped where it needs to be
    return render_template_string(LAYOUT, lang=str(get_locale() or "pl"), app_name=app_name, tagline=tagline,
                                  colour=colour, title=title, body=inner, refresh=refresh, links=links or [],
                                  language_label=_("Language"))


@dataclass
class SessionStore:
    """App sessions kept on the server, by a random key held in the (signed) Flask session cookie, so that
    a back-channel logout from the IdP can end a session the browser still holds a cookie for."""

    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new(self, data: dict[str, Any]) -> str:
        key = secrets.token_urlsafe(24)
        with self.lock:
            self.sessions[key] = data
        return key

    def get(self, key: str | None) -> dict[str, Any] | None:
        if not key:
            return None
        with self.lock:
            return self.sessions.get(key)

    def drop(self, key: str | None) -> None:
        with self.lock:
            self.sessions.pop(key or "", None)

    def drop_where(self, name: str, value: str) -> int:
        """End every session whose `name` equals `value`; how many ended."""
        with self.lock:
            keys = [k for k, s in self.sessions.items() if value and s.get(name) == value]
            for k in keys:
                del self.sessions[k]
            return len(keys)


class _QuietHandler(WSGIRequestHandler):
    """The demo prints its URLs once; a line per request of the sample apps would bury them."""

    def log_request(self, *args, **kwargs) -> None:
        pass

    def log(self, type: str, message: str, *args) -> None:  # noqa: A002 (werkzeug's signature)
        if type == "error":
            super().log(type, message, *args)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; OSError (EADDRINUSE ...) when the port cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT leftover is no user
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def serve_on(sock: socket.socket, app: Flask) -> BaseWSGIServer:
    """werkzeug's threaded server on an already bound socket (errors about the port were told earlier)."""
    host, port = sock.getsockname()[:2]
    server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler, fd=sock.fileno())
    sock.close()  # the server holds its own duplicate of the descriptor
    return server
