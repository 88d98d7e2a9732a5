"""DatasetStore: ids depend on rows only, versions are immutable, lookups by name/prefix."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from modelfab.data.versions import DatasetStore, content_id
from modelfab.errors import InputError, NotFoundError

ROWS = [
    {"package": "a", "section": "utils", "n": 1, "tags": ["x::1", "y::2"]},
    {"package": "b", "section": "doc", "n": 2, "tags": []},
]


def write_formats(tmp_path):
    frame = pd.DataFrame(ROWS)
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in ROWS))
    csv = tmp_path / "rows.csv"
    frame.assign(tags=[json.dumps(t) for t in frame["tags"]]).to_csv(csv, index=False)
    parquet = tmp_path / "other-name.parquet"
    frame[["tags", "n", "section", "package"]].to_parquet(parquet)  # column order differs too
    return jsonl, csv, parquet


def test_same_rows_same_id_across_formats(tmp_path):
    store = DatasetStore(tmp_path / "home")
    ids = {store.import_file(p).id for p in write_formats(tmp_path)}
    assert len(ids) == 1
    assert len(store.list()) == 1  # one immutable version, imported three times


def test_different_rows_different_id():
    frame = pd.DataFrame(ROWS)
    changed = frame.copy()
    changed.loc[1, "section"] = "libs"
    reordered = frame.iloc[::-1].reset_index(drop=True)
    assert content_id(frame) != content_id(changed)
    assert content_id(frame) != content_id(reordered)
    assert content_id(frame) == content_id(frame[sorted(frame.columns)])


def test_round_trip_keeps_lists_and_files(tmp_path):
    store = DatasetStore(tmp_path)
    version = store.import_frame(pd.DataFrame(ROWS), "pk", "test")
    assert version.path == tmp_path / "datasets" / f"{version.id}.parquet"
    assert version.path.is_file()
    assert (tmp_path / "datasets" / f"{version.id}.json").is_file()
    assert (version.n_rows, version.columns) == (2, ["package", "section", "n", "tags"])
    loaded = store.load(version.id)
    assert loaded["tags"].tolist() == [["x::1", "y::2"], []]
    assert all(isinstance(t, str) for t in loaded["tags"][0])
    assert content_id(loaded) == version.id


def test_reimport_is_noop(tmp_path):
    store = DatasetStore(tmp_path)
    first = store.import_frame(pd.DataFrame(ROWS), "pk", "one")
    mtime = first.path.stat().st_mtime_ns
    again = store.import_frame(pd.DataFrame(ROWS), "pk", "two")
    assert again == first
    assert first.path.stat().st_mtime_ns == mtime


def test_get_by_name_latest_and_prefix(tmp_path):
    store = DatasetStore(tmp_path)
    old = store.import_frame(pd.DataFrame(ROWS), "pk", "s")
    new = store.import_frame(pd.DataFrame(ROWS[:1]), "pk", "s")
    assert store.get("pk") == new
    assert store.get(old.id[:8]) == old
    assert store.get(old.id) == old
    assert [v.id for v in store.list()] == [old.id, new.id]
    alias = store.import_frame(pd.DataFrame(ROWS), "alias", "s")
    assert alias.id == old.id and store.get("alias").id == old.id
    with pytest.raises(NotFoundError, match="'nothing'"):
        store.get("nothing")
    with pytest.raises(NotFoundError):
        store.get(old.id[:7])  # prefixes shorter than 8 hex chars are not accepted


def test_bad_name_and_empty_frame(tmp_path):
    store = DatasetStore(tmp_path)
    with pytest.raises(InputError, match="dataset name"):
        store.import_frame(pd.DataFrame(ROWS), "../evil", "s")
    with pytest.raises(InputError, match="no rows"):
        store.import_frame(pd.DataFrame(), "empty", "s")
