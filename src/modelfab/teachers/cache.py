"""Feature cache on disk keyed by (teacher id, text hash), shared by every scenario.

One SQLite file per teacher: SQLite gives atomic, concurrent-safe writes for free, and a
killed process leaves either the committed rows or nothing.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelfab.progress import track
from modelfab.sqlite_wal import enable_wal
from modelfab.teachers.base import Teacher

BUSY_TIMEOUT_S = 60


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    forward_passes: int = 0  # texts the teacher actually encoded


class FeatureCache:
    """Teacher features stored as float32 blobs, one SQLite database per teacher id."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _connect(self, teacher_id: str) -> sqlite3.Connection:
        conn = sqlite3.connect(self.root / f"{teacher_id}.sqlite", timeout=BUSY_TIMEOUT_S)
        enable_wal(conn, BUSY_TIMEOUT_S)
        conn.execute("CREATE TABLE IF NOT EXISTS features (h TEXT PRIMARY KEY, v BLOB NOT NULL)")
        return conn

    def get(self, teacher_id: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        conn = self._connect(teacher_id)
        try:
            unique = list(dict.fromkeys(hashes))
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"SELECT h, v FROM features WHERE h IN ({marks})", chunk)
                for h, blob in rows:
                    found[h] = np.frombuffer(blob, dtype=np.float32)
        finally:
            conn.close()
        return found

    def put(self, teacher_id: str, items: dict[str, np.ndarray]) -> None:
        conn = self._connect(teacher_id)
        try:
            with conn:
                conn.executemany(
                    "INSERT OR IGNORE INTO features (h, v) VALUES (?, ?)",
                    [(h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in items.items()],
                )
        finally:
            conn.close()

    def encode(
        self, teacher: Teacher, texts: Sequence[str], chunk: int = 1024, label: str = "teacher"
    ) -> tuple[np.ndarray, CacheStats]:
        """Features for `texts`; only texts never seen by this teacher are encoded.

        New features are committed in chunks, so an interrupted run keeps what it finished.
        """
        hashes = [text_hash(t) for t in texts]
        cached = self.get(teacher.id, hashes)
        missing: dict[str, str] = {}
        for h, t in zip(hashes, texts, strict=True):
            if h not in cached and h not in missing:
                missing[h] = t
        # Every text is either encoded once or served from the cache: hits + passes == N.
        stats = CacheStats(hits=len(texts) - len(missing), forward_passes=len(missing))
        todo = list(missing.items())
        with track(f"{label}: encoding {len(todo)} new texts", len(todo)) as advance:
            for start in range(0, len(todo), chunk):
                part = todo[start : start + chunk]
                feats = teacher.encode([t for _, t in part], progress=advance)
                new = {h: f for (h, _), f in zip(part, feats, strict=True)}
                self.put(teacher.id, new)
                cached.update(new)
        out = (
            np.stack([cached[h] for h in hashes])
            if hashes
            else np.zeros((0, teacher.dim), np.float32)
        )
        return out.astype(np.float32, copy=False), stats
