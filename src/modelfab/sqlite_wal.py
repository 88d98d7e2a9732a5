"""Put an SQLite file in WAL mode when several processes may open it at once.

Turning a new database file to WAL needs an exclusive lock, and SQLite answers "database is
locked" at once, without waiting on its busy timeout, while another connection holds any lock
on the file. Two processes that open a fresh feature cache or registry together (a factory's
spawned workers) hit that about one time in three. So the switch is retried until it succeeds
or `timeout_s` has passed; a file already in WAL mode needs no lock and passes at once.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

RETRY_START_S = 0.005
RETRY_MAX_S = 0.2


def enable_wal(conn: Any, timeout_s: float) -> str:
    """Run `PRAGMA journal_mode=WAL` on a DB-API SQLite connection or cursor, retrying while
    the file is locked; returns the journal mode SQLite reports ("wal", or e.g. "memory")."""
    deadline = time.monotonic() + timeout_s
    wait = RETRY_START_S
    while True:
        try:
            row = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            return str(row[0]) if row else ""
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + wait > deadline:
                raise
        time.sleep(wait)
        wait = min(RETRY_MAX_S, wait * 2)
