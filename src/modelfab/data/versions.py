"""Content-addressed, immutable dataset versions.

A version's id is the sha256 of its rows, not of its file, so the same rows imported from JSONL,
CSV or Parquet get the same id and every downstream artifact can name exactly what it saw.
Layout under `root/datasets/`: `<id>.parquet` (the rows), `<id>.json` (metadata, written after
the Parquet file so a metadata file always points at complete data) and `names/<name>.json`
(ids imported under a name, in import order; the last one is the name's current version).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from modelfab.atomic import write_bytes, write_text
from modelfab.data.connectors import lists_from_arrays, load_table
from modelfab.data.rawio import strip_compression
from modelfab.errors import InputError, NotFoundError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HEX = re.compile(r"^[0-9a-f]{8,64}$")


@dataclasses.dataclass(frozen=True)
class DatasetVersion:
    id: str
    name: str
    source: str
    n_rows: int
    columns: list[str]
    path: Path
    created_at: str

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "path": str(self.path)}


def _plain(value: object) -> object:
    """A JSON-encodable, format-independent form of one cell (NaN/None -> None)."""
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, str | int | float | bool):
        return value
    if value is pd.NA:
        return None
    return str(value)  # timestamps, decimals: their text form is stable enough to hash


def content_id(df: pd.DataFrame) -> str:
    """sha256 over sorted column names, then each row's values JSON-encoded, in row order."""
    columns = sorted(str(c) for c in df.columns)
    digest = hashlib.sha256()
    digest.update(json.dumps(columns, ensure_ascii=False).encode() + b"\n")
    values = [df[c].tolist() for c in columns]
    for row in zip(*values, strict=True):
        line = json.dumps([_plain(v) for v in row], ensure_ascii=False, separators=(",", ":"))
        digest.update(line.encode() + b"\n")
    return digest.hexdigest()


def safe_name(raw: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-.") or "dataset"
    return name[:128]


class DatasetStore:
    """Versions of imported tables under `root/datasets`; versions are never modified."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.dir = self.root / "datasets"

    # -- writing -------------------------------------------------------------------------
    def import_frame(self, df: pd.DataFrame, name: str, source: str) -> DatasetVersion:
        """Store `df` as a version named `name`; identical rows return the existing version."""
        if not _NAME.match(name):
            raise InputError(f"dataset name {name!r}: use letters, digits, '.', '_' or '-'")
        if len(df) == 0:
            raise InputError(f"dataset {name!r} from {source}: no rows")
        df = df.reset_index(drop=True)
        df.columns = [str(c) for c in df.columns]
        version_id = content_id(df)
        meta_path = self.dir / f"{version_id}.json"
        if meta_path.is_file():
            version = self._read_meta(meta_path)
        else:
            parquet = self.dir / f"{version_id}.parquet"
            buffer = io.BytesIO()
            try:
                df.to_parquet(buffer, index=False)
            except Exception as exc:  # mixed-type columns etc.: say which dataset, not a trace
                raise InputError(f"dataset {name!r}: cannot store as Parquet ({exc})") from None
            write_bytes(parquet, buffer.getvalue())
            version = DatasetVersion(
                id=version_id,
                name=name,
                source=source,
                n_rows=len(df),
                columns=list(df.columns),
                path=parquet,
                created_at=datetime.now(UTC).isoformat(timespec="microseconds"),
            )
            write_text(meta_path, json.dumps(version.to_dict(), indent=2))
        self._add_name(name, version_id)
        return version

    def import_file(
        self,
        path: str | Path,
        fmt: str | None = None,
        name: str | None = None,
        translations: Path | None = None,
    ) -> DatasetVersion:
        """Load a file with `load_table` and import it; the name defaults to the file's stem."""
        path = Path(path)
        df = load_table(path, fmt, translations=translations)
        stem = strip_compression(path.name)
        stem = stem.rsplit(".", 1)[0] if "." in stem else stem
        return self.import_frame(df, name or safe_name(stem), str(path.resolve()))

    def _add_name(self, name: str, version_id: str) -> None:
        ref = self.dir / "names" / f"{name}.json"
        ids = json.loads(ref.read_text()) if ref.is_file() else []
        if not ids or ids[-1] != version_id:
            write_text(ref, json.dumps([*ids, version_id]))

    # -- reading -------------------------------------------------------------------------
    def _read_meta(self, path: Path) -> DatasetVersion:
        meta = json.loads(path.read_text())
        meta["path"] = self.dir / f"{meta['id']}.parquet"  # the store may have moved
        return DatasetVersion(**meta)

    def list(self) -> list[DatasetVersion]:
        """All versions, oldest first."""
        if not self.dir.is_dir():
            return []
        versions = [self._read_meta(p) for p in self.dir.glob("*.json")]
        return sorted(versions, key=lambda v: (v.created_at, v.id))

    def get(self, version_id_or_name: str) -> DatasetVersion:
        """A version by name (its latest import), full id, or unique id prefix of 8+ hex chars."""
        key = version_id_or_name
        ref = self.dir / "names" / f"{key}.json"
        if _NAME.match(key) and ref.is_file():
            return self._read_meta(self.dir / f"{json.loads(ref.read_text())[-1]}.json")
        if _HEX.match(key):
            matches = sorted(self.dir.glob(f"{key}*.json")) if self.dir.is_dir() else []
            if len(matches) == 1:
                return self._read_meta(matches[0])
            if len(matches) > 1:
                raise NotFoundError(f"dataset id prefix {key!r} is ambiguous; give more characters")
        known = ", ".join(sorted(p.stem for p in (self.dir / "names").glob("*.json"))) or "none"
        raise NotFoundError(f"dataset {key!r} not found (known names: {known})")

    def load(self, version_id: str) -> pd.DataFrame:
        """The rows of a version (id, prefix or name), list columns as Python lists."""
        version = self.get(version_id)
        return lists_from_arrays(pd.read_parquet(version.path))
