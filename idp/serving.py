"""The production server: gunicorn with sync workers, used by `idp serve` and by the benchmarks.

`run(host, port, workers)` serves `idp.create_app(instance=...)`; a caller that needs the same server
around a slightly different app (the benchmark adds two bare routes) passes `app_factory`, a callable
returning the Flask app. Each worker builds its own app and starts its own outbox delivery thread.

Each worker, once its app is built: keeps argon2's working memory between passwords
(idp.core.passwords.keep_hashing_memory), takes SQLite's WAL checkpoints off the requests' commits (a
thread: idp.sqlite_gate.checkpoint_in_background), and freezes the app's objects out of the garbage
collector's full passes.

Logs: the app writes one access line per request itself (idp.http.observability: JSON with the request
id, the path without its query string), so gunicorn's access log is off; its error log (start, worker
boots and exits, WORKER TIMEOUT) stays on stderr, in the app's LOG_FORMAT.

Metrics: the workers are separate processes, so prometheus_client runs in multiprocess mode — every
worker writes its values to files in a fresh private folder (PROMETHEUS_MULTIPROC_DIR, mode 0700, made
before the workers fork and removed when the server stops), and /metrics in any worker sums them all.
"""
from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import Callable

from flask import Flask
from gunicorn.app.base import BaseApplication

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_metrics_dir() -> str:
    """A fresh, empty, private folder for the workers' metric files, exported as PROMETHEUS_MULTIPROC_DIR.

    Called in the master before the workers fork. prometheus_client picks its value class (in memory or
    in files) when it is first imported — which the master may already have done (`idp serve` builds an
    app to check the schema): pick it again now. Values created before this stay in memory; idp's metrics
    all have labels, so none is created before a request in a worker."""
    folder = tempfile.mkdtemp(prefix="idp-metrics-")  # mode 0700, new: nothing of an earlier run
    os.environ[MULTIPROC_ENV] = folder
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
    return folder


def _logger_class(log_format: str) -> type:
    """gunicorn's logger, its lines in LOG_FORMAT (JSON by default) like the app's, so one parser reads
    the whole stream — a WORKER TIMEOUT included."""
    from gunicorn.glogging import Logger

    from idp.http.observability import add_request_id, formatter

    class AppFormatLogger(Logger):
        def setup(self, cfg) -> None:
            super().setup(cfg)
            for handler in self.error_log.handlers:
                handler.setFormatter(formatter(log_format))
                add_request_id(handler)

    return AppFormatLogger


def _child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _on_exit(server) -> None:
    folder = os.environ.get(MULTIPROC_ENV)
    if folder and os.path.basename(folder).startswith("idp-metrics-"):
        shutil.rmtree(folder, ignore_errors=True)


class IdpServer(BaseApplication):
    """gunicorn configured in code: no config file, no command line of its own."""

    def __init__(self, host: str, port: int, workers: int | None = None, *, instance: str | None = None,
                 app_factory: Callable[[], Flask] | None = None, outbox_worker: bool = True,
                 log_format: str = "json"):
        self.host, self.port = host, port
        self.log_format = log_format
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
        self.cfg.set("accesslog", None)  # the app logs each request (JSON, no query strings)
        self.cfg.set("errorlog", "-")
        self.cfg.set("logger_class", _logger_class(self.log_format))
        # No control socket: gunicorn's default path is per user, so several instances on one
        # machine would take over (and on exit delete) each other's socket.
        self.cfg.set("control_socket_disable", True)
        self.cfg.set("child_exit", _child_exit)
        self.cfg.set("on_exit", _on_exit)

    def load(self):
        if self.app_factory is not None:
            app = self.app_factory()
        else:
            from idp import create_app

            app = create_app(instance=self.instance)
        from idp import sqlite_gate
        from idp.core.passwords import keep_hashing_memory
        from idp.extensions import db

        keep_hashing_memory(app.config["ARGON2_MEMORY_COST"])  # this worker's allocator, before any login
        if sqlite_gate.checkpoint_in_background(app.config["SQLALCHEMY_DATABASE_URI"]):
            with app.app_context():
                db.engine.dispose()  # connections opened while building the app: reopened in background mode
        # The app's ~160,000 objects live as long as the worker: out of the collector's sight, a full
        # collection no longer walks them all (~50-100 ms, a pause in whichever request triggers it).
        gc.collect()
        gc.freeze()
        if self.outbox_worker:
            from idp.core import mail as outbox

            # Each worker delivers the outbox too; claims keep two workers from sending one message.
            outbox.start_worker(app, interval=app.config["MAIL_WORKER_INTERVAL"])
        return app


def run(host: str, port: int, workers: int | None = None, *, instance: str | None = None,
        app_factory: Callable[[], Flask] | None = None, log_format: str = "json") -> None:
    """Serve until SIGTERM/SIGINT (gunicorn's master loop; returns when it stops)."""
    folder = prepare_metrics_dir()
    try:
        IdpServer(host, port, workers, instance=instance, app_factory=app_factory, log_format=log_format).run()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
