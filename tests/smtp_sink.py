"""An SMTP sink for tests: aiosmtpd on 127.0.0.1, every received message kept and parsed.

Shared by the HTTP tests (tests/recovery) and the browser tests (tests/e2e); it imports nothing of the
application. The port is fixed when the sink is made, so a test can start it late (the SMTP server was
down, now it is back) or stop it, and the IdP keeps pointing at the same address.
"""
from __future__ import annotations

import asyncio
import email
import re
import socket
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as default_policy

from aiosmtpd.controller import Controller

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nothing listens on right now (and that a sink may bind later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Received:
    """One message as the SMTP server got it: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes

    @property
    def to(self) -> str:
        return str(self.message["To"])

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, subtype: str) -> str:
        """The decoded text of the text/<subtype> part ('plain' or 'html')."""
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None and body.get_content_type() == f"text/{subtype}", (
            f"no text/{subtype} part in {self.message.get_content_type()} message")
        return body.get_content()

    @property
    def text(self) -> str:
        return self.part("plain")

    @property
    def html(self) -> str:
        return self.part("html")


class SmtpSink:
    """Start/stop an aiosmtpd server on a fixed port; `messages` holds everything accepted, in order.

    `refuse` (a set of addresses) makes the server answer 550 to those recipients; `delay` slows each
    DATA command down (to make two senders overlap).
    """

    def __init__(self, port: int | None = None):
        self.host = HOST
        self.port = port or free_port()
        self.messages: list[Received] = []
        self.refuse: set[str] = set()
        self.delay = 0.0
        self._controller: Controller | None = None
        self._lock = threading.Lock()

    # --- aiosmtpd handler hooks ---------------------------------------------------------------------

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        parsed = email.message_from_bytes(raw, policy=default_policy)
        with self._lock:
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed, raw))
        return "250 2.0.0 Message accepted for delivery"

    # --- control --------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> SmtpSink:
        assert self._controller is None, "the sink is already running"
        controller = Controller(self, hostname=self.host, port=self.port, ready_timeout=10)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    # --- reading --------------------------------------------------------------------------------------

    def to(self, address: str) -> list[Received]:
        """Messages whose envelope recipients include `address` (case-insensitive)."""
        address = address.lower()
        with self._lock:
            return [m for m in self.messages if address in (r.lower() for r in m.rcpt_tos)]

    def wait_for(self, address: str, count: int = 1, timeout: float = 15.0) -> list[Received]:
        """Wait (bounded) until at least `count` messages reached `address`; the messages."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.to(address)
            if len(got) >= count:
                return got
            time.sleep(0.1)
        got = self.to(address)
        raise AssertionError(f"{len(got)} message(s) reached {address} within {timeout} s, expected {count}")


LINK_RE = re.compile(r"https?://[^\s<>\"']+/password/reset/[A-Za-z0-9_.\-]+")


def link_in(text: str) -> str:
    """The single reset link a message body carries."""
    links = set(LINK_RE.findall(text))
    assert len(links) == 1, f"expected one reset link, found {sorted(links)} in:\n{text}"
    return links.pop()
