"""Fixtures for the reset-by-link tests: an SMTP sink (aiosmtpd) the app fixture's outbox delivers to.

The outbox reads MAIL_SERVER / MAIL_PORT from `current_app.config` when it sends (idp.core.mail._send),
so the fixtures point the already-built app at the sink by changing its config before anything is sent.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.smtp_sink import HOST, SmtpSink


def _point_app_at(app, sink: SmtpSink) -> None:
    app.config.update(MAIL_SERVER=HOST, MAIL_PORT=sink.port, MAIL_USE_TLS=False, MAIL_USE_SSL=False,
                      MAIL_USERNAME=None)


@pytest.fixture
def smtp_sink(app) -> Iterator[SmtpSink]:
    """A listening SMTP server on 127.0.0.1 and a free port; the app's mail goes there."""
    sink = SmtpSink().start()
    _point_app_at(app, sink)
    yield sink
    sink.stop()


@pytest.fixture
def smtp_down(app) -> Iterator[SmtpSink]:
    """The SMTP server is down: the app's mail goes to a port nothing listens on. `.start()` brings the
    server up on that same port (the app keeps pointing at it)."""
    sink = SmtpSink()
    _point_app_at(app, sink)
    yield sink
    sink.stop()
