"""SQLite writers queue on an OS lock instead of SQLite's busy handler.

SQLite lets one connection write at a time. A second writer waits in SQLite's busy handler, which
sleeps 1, 2, 5, 10 … ms between tries. A validation or token exchange holds the write lock for well under
a millisecond, so with several gunicorn workers most of that sleeping is idle time: in the benchmark,
workers stood idle for 40 % of a validation load.

Every connection to a database file therefore takes an exclusive `flock` on `<file>-writer.lock` just
before its first write of a transaction (the statement that makes Python's sqlite3 open one), and drops
it after the commit or rollback. A waiting writer tries again every 50–500 µs (instead of SQLite's
1–100 ms), so it starts well within a millisecond of the lock coming free.
Reads never take it (WAL readers do not block). A writer that cannot get the lock within the busy
timeout goes ahead without it and meets SQLite's own locking, as before: the gate only ever saves time.

A server process also takes checkpoints off the write path (`checkpoint_in_background`): by default the
connection whose commit brings the WAL past 1000 pages copies them into the database and fsyncs it inside
that commit — ~7 ms here, with the gate held, so every writer stalls behind it two or three times a second
under load. A thread of each worker checkpoints instead (PASSIVE: writers go on meanwhile), ten times a
second; the commit-time checkpoint stays as a backstop at a much larger WAL.

PostgreSQL needs none of this; it is only installed for file-backed SQLite databases.
"""
from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from urllib.parse import quote

#: Statements that start a write transaction under Python's sqlite3 (legacy transaction control).
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
#: How long a writer waits for the gate before going ahead without it (SQLite's busy timeout).
WAIT_SECONDS = 5.0
#: The WAL size (pages) at which a commit checkpoints, once a thread does it in the background (SQLite: 1000).
BACKSTOP_PAGES = 20000
#: The size (bytes) a WAL file is cut back to when SQLite starts it over.
JOURNAL_LIMIT = 64 * 1024 * 1024
#: How often the background thread checkpoints (seconds), and how long it pauses after a failure.
CHECKPOINT_INTERVAL = 0.1
RETRY_PAUSE = 1.0

log = logging.getLogger("idp.sqlite")
_background = False


class _Gate:
    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.held = False

    def acquire(self) -> None:
        if self.held:
            return
        deadline = None
        pause = 0.00005
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.held = True
                return
            except BlockingIOError:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + WAIT_SECONDS
                elif now >= deadline:
                    return  # go ahead: SQLite's own locking decides, as without the gate
                time.sleep(pause)
                pause = min(pause * 2, 0.0005)

    def release(self) -> None:
        if self.held:
            self.held = False
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self.release()
        os.close(self.fd)


class GatedCursor(sqlite3.Cursor):
    def execute(self, sql, parameters=(), /):
        if not self.connection.in_transaction and sql.lstrip()[:7].upper().startswith(_WRITES):
            self.connection.gate.acquire()
        return super().execute(sql, parameters)

    def executemany(self, sql, seq_of_parameters, /):
        if not self.connection.in_transaction and sql.lstrip()[:7].upper().startswith(_WRITES):
            self.connection.gate.acquire()
        return super().executemany(sql, seq_of_parameters)


class GatedConnection(sqlite3.Connection):
    """A sqlite3 connection whose write transactions hold the file's writer gate (see the module)."""

    def __init__(self, database, *args, **kwargs):
        super().__init__(database, *args, **kwargs)
        self.gate = _Gate(f"{os.fsencode(database).decode()}-writer.lock")
        if _background:
            self.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
            self.execute(f"PRAGMA journal_size_limit={JOURNAL_LIMIT}")  # a WAL grown large shrinks back

    def cursor(self, factory=GatedCursor):
        return super().cursor(factory)

    def commit(self):
        try:
            super().commit()
        finally:
            self.gate.release()

    def rollback(self):
        try:
            super().rollback()
        finally:
            self.gate.release()

    def close(self):
        try:
            super().close()
        finally:
            self.gate.close()


def database_file(database_url: str) -> str | None:
    """The file of a file-backed SQLite URL; None for anything else (memory, URIs, other databases)."""
    if not database_url.startswith("sqlite"):
        return None
    path = database_url.split("///", 1)[1] if "///" in database_url else ""
    if not path or path.startswith(":memory:") or "mode=memory" in path or path.startswith("file:"):
        return None
    return path.split("?", 1)[0]  # SQLAlchemy's query options are not part of the file name


def engine_options(database_url: str) -> dict:
    """SQLAlchemy engine options that install the gate for a file-backed SQLite database."""
    return {"connect_args": {"factory": GatedConnection}} if database_file(database_url) else {}


def checkpoint_in_background(database_url: str) -> Checkpointer | None:
    """In a server process, before its app opens connections: leave WAL checkpoints to a daemon thread of
    this process (see the module). Nothing for other databases."""
    global _background
    path = database_file(database_url)
    if path is None:
        return None
    _background = True
    thread = Checkpointer(path)
    thread.start()
    return thread


class Checkpointer(threading.Thread):
    """PASSIVE checkpoints of one database file every CHECKPOINT_INTERVAL, on a connection of its own."""

    def __init__(self, path: str):
        super().__init__(name="sqlite-checkpoint", daemon=True)
        self.path = path
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()
        self.join()

    def run(self) -> None:
        conn = None
        failing = False
        while not self.stopping.wait(CHECKPOINT_INTERVAL):
            try:
                if conn is None:  # never creates the file: a wrong path fails here instead
                    conn = sqlite3.connect(f"file:{quote(self.path)}?mode=rw", uri=True, timeout=WAIT_SECONDS,
                                           isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                if failing:
                    log.info("background WAL checkpoints work again")
                failing = False
            except Exception as exc:  # never fatal: the backstop checkpoints at commit time
                if not failing:  # once per run of failures, not ten times a second
                    log.warning("background WAL checkpoint failed (commits checkpoint past %s pages "
                                "meanwhile): %s", BACKSTOP_PAGES, exc)
                failing = True
                if conn is not None:
                    conn.close()
                conn = None
                self.stopping.wait(RETRY_PAUSE)
        if conn is not None:
            conn.close()
