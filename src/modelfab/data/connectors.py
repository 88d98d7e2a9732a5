"""Load a table from a file in any supported format into a DataFrame, or fail in one line.

Every format goes through the same contract: a non-empty DataFrame with a fresh RangeIndex,
list-valued cells as Python lists (so content hashing is format-independent), and InputError
with the file name for anything wrong with the input.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from modelfab.data.debian import (
    debian_index_paths,
    parse_packages,
    read_translations,
    sibling_translations,
)
from modelfab.data.rawio import decode_utf8, read_bytes, strip_compression
from modelfab.errors import InputError

__all__ = ["FORMATS", "debian_index_paths", "detect_format", "load_table"]

FORMATS = ("jsonl", "csv", "parquet", "debian", "debian-snapshot")


def detect_format(path: Path) -> str:
    """Guess the format from the file name; InputError when the name says nothing useful."""
    name = strip_compression(path.name.lower())
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith(("packages", ".packages", ".dumpavail")):
        return "debian"
    raise InputError(f"{path}: cannot tell the format from the name; pass one of {FORMATS}")


def _read_jsonl(path: Path) -> pd.DataFrame:
    text = decode_utf8(read_bytes(path), path)
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}: line {number} is not a JSON object")
        records.append(record)
    return pd.DataFrame.from_records(records)


def _json_list(value: object) -> list | None:
    if not isinstance(value, str) or not value.startswith("["):
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, list) else None


def _read_csv(path: Path) -> pd.DataFrame:
    text = decode_utf8(read_bytes(path), path)
    if not text.strip():
        return pd.DataFrame()
    try:
        df = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: malformed CSV ({first})") from None
    # CSV has no list type; a column whose every cell is a JSON array is read back as lists.
    for column in df.columns:
        cells = df[column].dropna()
        if len(cells) and all(_json_list(v) is not None for v in cells):
            df[column] = [_json_list(v) if isinstance(v, str) else v for v in df[column]]
    return df


def _read_parquet(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a bad file; all are bad input
        raise InputError(f"{path}: not a readable Parquet file ({type(exc).__name__})") from None


def _read_debian(path: Path, translations: Path | None) -> pd.DataFrame:
    text = decode_utf8(read_bytes(path), path)
    extra = [translations] if translations is not None else sibling_translations(path)
    for file in extra:
        if not file.is_file():
            raise InputError(f"{file}: no such translations file")
    return parse_packages(text, read_translations(extra))


def lists_from_arrays(df: pd.DataFrame) -> pd.DataFrame:
    """Replace numpy-array cells (how Parquet returns list columns) with Python lists."""
    for column in df.columns:
        if df[column].dtype == object and any(isinstance(v, np.ndarray) for v in df[column]):
            df[column] = [v.tolist() if isinstance(v, np.ndarray) else v for v in df[column]]
    return df


def load_table(
    path: str | Path, fmt: str | None = None, translations: Path | None = None
) -> pd.DataFrame:
    """Read `path` as `fmt` (guessed from the suffix when None) into a non-empty DataFrame.

    `translations` is a Translation-en file for the `debian` format; without it a sibling
    `*_i18n_Translation-en*` file is used when apt stored one next to the Packages file.
    """
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise InputError(f"{path}: unknown format {fmt!r}; expected one of {FORMATS}")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if fmt in ("jsonl", "debian-snapshot"):
        df = _read_jsonl(path)
    elif fmt == "csv":
        df = _read_csv(path)
    elif fmt == "parquet":
        df = _read_parquet(path)
    else:
        df = _read_debian(path, translations)
    if len(df) == 0:
        raise InputError(f"{path}: empty file (no rows)")
    return lists_from_arrays(df.reset_index(drop=True))
