"""The demo's mailbox: an SMTP sink the IdP delivers to, and a web page to read what arrived.

Every message the IdP sends (password reset links, "your password was changed", link confirmations …)
is accepted whatever its recipient and kept in memory, newest first. The list refreshes itself; a
message's page shows its plain-text part with the links clickable, so a reset link opens the IdP's reset
page in one click. The HTML part is served on its own page under a CSP sandbox (no scripts, no forms).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import email
import re
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy

from aiosmtpd.smtp import SMTP
from flask import Flask, Response, abort
from flask_babel import gettext as _
from markupsafe import Markup, escape

from idp.demo.web import make_app, page

NAME = "Mail viewer"
COLOUR = "#2f6b3a"
#: The list page reloads itself every few seconds: a message shows up without a click.
REFRESH_SECONDS = 3
URL_RE = re.compile(r"https?://[^\s<>\"']+")
#: Kept per run at most (oldest dropped): the demo may run for days.
MAX_MESSAGES = 500


@dataclass
class Message:
    number: int
    received_at: dt.datetime
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    parsed: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.parsed["Subject"] or "")

    def part(self, subtype: str) -> str | None:
        body = self.parsed.get_body(preferencelist=(subtype,))
        if body is None or body.get_content_type() != f"text/{subtype}":
            return None
        return body.get_content()


@dataclass
class Mailbox:
    """Everything the SMTP sink accepted; aiosmtpd calls handle_DATA for each message."""

    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 1

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        parsed = email.message_from_bytes(raw, policy=default_policy)
        with self.lock:
            self.messages.append(Message(self._next, dt.datetime.now().astimezone(), envelope.mail_from,
                                         list(envelope.rcpt_tos), raw, parsed))
            self._next += 1
            del self.messages[:-MAX_MESSAGES]
        return "250 2.0.0 Message accepted for delivery"

    def newest_first(self) -> list[Message]:
        with self.lock:
            return list(reversed(self.messages))

    def get(self, number: int) -> Message | None:
        with self.lock:
            return next((m for m in self.messages if m.number == number), None)


class SmtpSink:
    """aiosmtpd on its own event loop in a thread, serving an already bound socket."""

    def __init__(self, sock: socket.socket, mailbox: Mailbox):
        self.mailbox = mailbox
        self.loop = asyncio.new_event_loop()
        # hostname given: aiosmtpd would otherwise ask the resolver for this machine's FQDN.
        self.server = self.loop.run_until_complete(self.loop.create_server(
            lambda: SMTP(mailbox, hostname="idp-demo.localhost", loop=self.loop), sock=sock))
        self.thread = threading.Thread(target=self.loop.run_forever, name="idp-demo-smtp", daemon=True)

    def start(self) -> SmtpSink:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
        self.server.close()
        self.loop.run_until_complete(self.server.wait_closed())
        self.loop.close()


def linkify(text: str) -> Markup:
    """The text, HTML-escaped, with every http(s) URL a link."""
    out, last = [], 0
    for match in URL_RE.finditer(text):
        url = match.group(0).rstrip(".,;:)")
        out.append(escape(text[last:match.start()]))
        out.append(Markup('<a href="{0}">{0}</a>').format(url))
        last = match.start() + len(url)
    out.append(escape(text[last:]))
    return Markup("").join(out)


def create_app(mailbox: Mailbox, smtp_address: str, links: list[tuple[str, str]] | None = None) -> Flask:
    """The viewer of `mailbox`; `smtp_address` (host:port) is shown so a developer can send mail to it too."""
    app = make_app(__name__, session_cookie="mailview_session")

    def show(title: str, body: str, status: int = 200, **context):
        return page(_("Mail viewer"), _("Every message the IdP sends lands here (SMTP %(address)s)",
                                        address=smtp_address),
                    COLOUR, title, body, links=links or [], **context), status

    @app.get("/")
    def inbox():
        messages = mailbox.newest_first()
        return show(_("Messages"), """
{% if messages %}
<table id="messages">
<tr><th scope="col">{{ received }}</th><th scope="col">{{ to }}</th><th scope="col">{{ subject }}</th></tr>
{% for m in messages %}<tr>
<td>{{ m.received_at.strftime("%H:%M:%S") }}</td><td class="to">{{ m.rcpt_tos|join(", ") }}</td>
<td><a class="message" href="messages/{{ m.number }}">{{ m.subject or "—" }}</a></td></tr>{% endfor %}
</table>
{% else %}<p id="empty">{{ empty }}</p>{% endif %}
<p class="note">{{ note }}</p>""", refresh=REFRESH_SECONDS, messages=messages, received=_("Received"),
                    to=_("To"), subject=_("Subject"),
                    empty=_("No messages yet. Try “Forgot your password?” on the IdP's login page."),
                    note=_("This page refreshes itself every few seconds."))

    @app.get("/messages/<int:number>")
    def message(number: int):
        m = mailbox.get(number) or abort(404)
        text = m.part("plain")
        return show(m.subject or "—", """
<table>
<tr><th scope="row">{{ from_label }}</th><td>{{ m.parsed["From"] }}</td></tr>
<tr><th scope="row">{{ to_label }}</th><td id="to">{{ m.rcpt_tos|join(", ") }}</td></tr>
<tr><th scope="row">{{ date_label }}</th><td>{{ m.parsed["Date"] or m.received_at }}</td></tr>
</table>
{% if text is not none %}<pre id="body">{{ text }}</pre>{% else %}<p>{{ no_text }}</p>{% endif %}
<p>{% if has_html %}<a href="{{ m.number }}/html">{{ html_label }}</a> · {% endif %}
<a href="{{ m.number }}/raw">{{ raw_label }}</a> · <a href="../">{{ back }}</a></p>""",
                    m=m, text=linkify(text) if text is not None else None, has_html=m.part("html") is not None,
                    from_label=_("From"), to_label=_("To"), date_label=_("Date"),
                    no_text=_("This message has no plain-text part."), html_label=_("HTML version"),
                    raw_label=_("Message source"), back=_("All messages"))

    @app.get("/messages/<int:number>/html")
    def message_html(number: int):
        m = mailbox.get(number) or abort(404)
        body = m.part("html")
        if body is None:
            abort(404)
        # Mail HTML is someone else's markup: no scripts, forms or plugins; links still work.
        return Response(body, mimetype="text/html", headers={
            "Content-Security-Policy": "sandbox allow-top-navigation-by-user-activation allow-popups; "
                                       "default-src 'none'; style-src 'unsafe-inline'; img-src data:"})

    @app.get("/messages/<int:number>/raw")
    def message_raw(number: int):
        m = mailbox.get(number) or abort(404)
        return Response(m.raw, mimetype="text/plain", headers={"Content-Disposition": "inline"})

    return app
