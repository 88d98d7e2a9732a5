"""SQLite files turned to WAL mode while other connections hold or race for their locks."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time

import pytest
from wal_workers import open_fresh

from modelfab.sqlite_wal import enable_wal


def _locked(path) -> sqlite3.Connection:
    """A connection holding a shared lock on a new (rollback-journal) database file."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN")
    holder.execute("SELECT * FROM t").fetchall()
    return holder


def test_enable_wal_waits_until_the_lock_is_released(tmp_path):
    path = tmp_path / "x.sqlite"
    holder = _locked(path)
    conn = sqlite3.connect(path, timeout=0)  # no busy wait of SQLite's own
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        conn.execute("PRAGMA journal_mode=WAL")  # what a plain switch does meanwhile
    threading.Timer(0.3, holder.rollback).start()
    start = time.monotonic()
    assert enable_wal(conn, timeout_s=10) == "wal"
    assert time.monotonic() - start >= 0.25
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_enable_wal_gives_up_after_its_timeout(tmp_path):
    path = tmp_path / "x.sqlite"
    holder = _locked(path)
    conn = sqlite3.connect(path, timeout=0)
    start = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        enable_wal(conn, timeout_s=0.2)
    assert 0.1 <= time.monotonic() - start < 2
    holder.rollback()


def test_enable_wal_on_an_in_memory_database_keeps_its_mode():
    assert enable_wal(sqlite3.connect(":memory:"), timeout_s=1) == "memory"


@pytest.mark.parametrize("kind", ["cache", "registry"])
def test_processes_opening_a_new_file_at_once_all_succeed(kind, tmp_path):
    """Four processes open a new feature cache or registry at the same moment, ten times: a
    plain WAL switch failed ("database is locked", at once) in about 1 trial in 4."""
    workers = 4
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for trial in range(10):
            root = str(tmp_path / str(trial))
            start_at = time.time() + 0.3
            args = [(kind, root, w, start_at) for w in range(workers)]
            assert pool.starmap(open_fresh, args) == [None] * workers, f"trial {trial}"
