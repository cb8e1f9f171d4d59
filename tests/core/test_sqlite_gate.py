"""SQLite's write path in a server process: WAL checkpoints happen in a thread, not inside a request's commit."""
from __future__ import annotations

import sqlite3
import time

import pytest

from idp import sqlite_gate


@pytest.fixture
def database(tmp_path, monkeypatch):
    """A WAL database file; this test process is a "server" only for the test."""
    monkeypatch.setattr(sqlite_gate, "_background", False)
    path = tmp_path / "idp.db"
    sqlite3.connect(path).execute("PRAGMA journal_mode=WAL").fetchall()
    return path


def _write_pages(conn: sqlite3.Connection, rows: int) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
    for _ in range(rows):
        conn.execute("INSERT INTO t (v) VALUES (?)", ("x" * 3000,))  # about a page each
        conn.commit()


def test_a_commit_no_longer_checkpoints_the_thread_does(database):
    url = f"sqlite:///{database}"
    sqlite_gate.checkpoint_in_background(url).stop()  # background mode, its thread held back while writing
    conn = sqlite3.connect(database, factory=sqlite_gate.GatedConnection)
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == sqlite_gate.BACKSTOP_PAGES
    _write_pages(conn, 1500)  # past SQLite's default of 1000 pages, which a commit would have checkpointed
    assert database.stat().st_size < 100 * 4096  # the pages are in the WAL only
    thread = sqlite_gate.checkpoint_in_background(url)
    try:
        deadline = time.monotonic() + 5
        while database.stat().st_size < 1500 * 4096:  # copied into the database, with no write of ours
            assert time.monotonic() < deadline, "the background thread did not checkpoint the WAL"
            time.sleep(0.05)
    finally:
        thread.stop()
    conn.close()


def test_other_processes_keep_sqlites_own_checkpoints(database):
    conn = sqlite3.connect(database, factory=sqlite_gate.GatedConnection)
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    _write_pages(conn, 1200)
    assert database.stat().st_size >= 1000 * 4096  # a commit checkpointed, as SQLite does by default
    conn.close()


def test_the_file_of_a_url_with_options():
    assert sqlite_gate.database_file("sqlite:////srv/idp/idp.db?timeout=10") == "/srv/idp/idp.db"


def test_a_wrong_path_is_never_created_and_said_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(sqlite_gate, "_background", False)
    monkeypatch.setattr(sqlite_gate, "CHECKPOINT_INTERVAL", 0.01)
    monkeypatch.setattr(sqlite_gate, "RETRY_PAUSE", 0.01)
    missing = tmp_path / "missing.db"
    thread = sqlite_gate.checkpoint_in_background(f"sqlite:///{missing}")
    time.sleep(0.3)  # some fifteen tries
    thread.stop()
    assert not missing.exists()
    assert caplog.text.count("background WAL checkpoint failed") == 1


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "postgresql://127.0.0.1/test"])
def test_nothing_to_checkpoint_elsewhere(url, monkeypatch):
    monkeypatch.setattr(sqlite_gate, "_background", False)
    assert sqlite_gate.checkpoint_in_background(url) is None
    assert sqlite_gate._background is False
