"""The production server: gunicorn with sync workers, used by `idp serve` and by the benchmarks.

`run(host, port, workers)` serves `idp.create_app(instance=...)`; a caller that needs the same server
around a slightly different app (the benchmark adds two bare routes) passes `app_factory`, a callable
returning the Flask app. Each worker builds its own app and starts its own outbox delivery thread.
"""
from __future__ import annotations

import os
from collections.abc import Callable

from flask import Flask
from gunicorn.app.base import BaseApplication

#: Path without the query string: queries carry tickets and PGTs, which must not reach logs.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'


class IdpServer(BaseApplication):
    """gunicorn configured in code: no config file, no command line of its own."""

    def __init__(self, host: str, port: int, workers: int | None = None, *, instance: str | None = None,
                 app_factory: Callable[[], Flask] | None = None, outbox_worker: bool = True):
        self.host, self.port = host, port
        self.workers = workers or os.cpu_count() or 1
        self.instance = instance
        self.app_factory = app_factory
        self.outbox_worker = outbox_worker
        super().__init__()

    def load_config(self):
        self.cfg.set("bind", f"{self.host}:{self.port}")
        self.cfg.set("workers", self.workers)
        self.cfg.set("worker_class", "sync")
        self.cfg.set("timeout", 30)
        self.cfg.set("graceful_timeout", 5)
        self.cfg.set("accesslog", "-")
        # No control socket: gunicorn's default path is per user, so several instances on one
        # machine would take over (and on exit delete) each other's socket.
        self.cfg.set("control_socket_disable", True)
        self.cfg.set("access_log_format", ACCESS_LOG_FORMAT)

    def load(self):
        if self.app_factory is not None:
            app = self.app_factory()
        else:
            from idp import create_app

            app = create_app(instance=self.instance)
        if self.outbox_worker:
            from idp.core import mail as outbox

            # Each worker delivers the outbox too; claims keep two workers from sending one message.
            outbox.start_worker(app, interval=app.config["MAIL_WORKER_INTERVAL"])
        return app


def run(host: str, port: int, workers: int | None = None, *, instance: str | None = None,
        app_factory: Callable[[], Flask] | None = None) -> None:
    """Serve until SIGTERM/SIGINT (gunicorn's master loop; returns when it stops)."""
    IdpServer(host, port, workers, instance=instance, app_factory=app_factory).run()
