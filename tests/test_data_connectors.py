"""load_table: every format to the same table, and one-line InputErrors for bad input."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from modelfab.data.connectors import detect_format, load_table
from modelfab.errors import InputError

PACKAGES = """\
Package: alpha
Version: 1.0-1
Description: Alpha tool for testing
Description-md5: 0123456789abcdef0123456789abcdef
Tag: interface::commandline, role::program,
 use::testing
Section: contrib/utils

Package: alpha-doc
Source: alpha (1.0-1)
Description: Documentation for alpha
 Inline long description.
 .
 Second paragraph.
Section: doc

Package: beta
Description: Beta library
Description-md5: fedcba9876543210fedcba9876543210
Section: libs

Package: alpha
Description: Duplicate stanza, ignored
Section: games
"""

TRANSLATION = """\
Package: alpha
Description-md5: 0123456789abcdef0123456789abcdef
Description-en: Alpha tool for testing
 Alpha does things.
 .
 More about alpha.

Package: beta
Description-md5: fedcba9876543210fedcba9876543210
Description-en: Beta library
 Beta long text.
"""

ROWS = [
    {"package": "a", "section": "utils", "n": 1, "tags": ["x::1", "y::2"]},
    {"package": "b", "section": "doc", "n": 2, "tags": ["x::3"]},
]


def write_debian(tmp_path: Path) -> Path:
    packages = tmp_path / "host_dists_main_binary-amd64_Packages"
    packages.write_text(PACKAGES)
    (tmp_path / "host_dists_main_i18n_Translation-en").write_text(TRANSLATION)
    return packages


def test_debian_stanzas_join_translations_and_normalize_fields(tmp_path):
    df = load_table(write_debian(tmp_path))
    assert list(df["package"]) == ["alpha", "alpha-doc", "beta"]  # duplicate alpha dropped
    alpha, doc, beta = (df.iloc[i] for i in range(3))
    assert alpha["section"] == "utils"  # "contrib/" component stripped
    assert alpha["summary"] == "Alpha tool for testing"
    assert alpha["description"] == "Alpha does things.\n\nMore about alpha."
    assert alpha["tags"] == ["interface::commandline", "role::program", "use::testing"]
    assert alpha["source"] == "alpha"
    assert doc["source"] == "alpha"  # "name (version)" -> name
    assert doc["description"] == "Inline long description.\n\nSecond paragraph."
    assert doc["tags"] == []
    assert beta["description"] == "Beta long text."


def test_debian_explicit_translations_file(tmp_path):
    packages = tmp_path / "Packages"
    packages.write_text(PACKAGES)
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "Translation-en").write_text(TRANSLATION)
    df = load_table(packages, translations=other / "Translation-en")
    assert df.loc[df["package"] == "beta", "description"].item() == "Beta long text."


def test_debian_compressed_gz_and_lz4(tmp_path):
    packages = write_debian(tmp_path)
    gz = tmp_path / (packages.name + ".gz")
    gz.write_bytes(gzip.compress(packages.read_bytes()))
    expected = load_table(packages)
    pd.testing.assert_frame_equal(load_table(gz), expected)
    if shutil.which("lz4") is None:
        pytest.skip("lz4 command not installed")
    subprocess.run(["lz4", "-q", str(packages), str(packages) + ".lz4"], check=True)
    pd.testing.assert_frame_equal(load_table(Path(str(packages) + ".lz4")), expected)


def test_same_rows_from_jsonl_csv_parquet(tmp_path):
    jsonl = tmp_path / "rows.jsonl.gz"
    jsonl.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in ROWS).encode()))
    csv = tmp_path / "rows.csv"
    frame = pd.DataFrame(ROWS)
    frame.assign(tags=[json.dumps(t) for t in frame["tags"]]).to_csv(csv, index=False)
    parquet = tmp_path / "rows.parquet"
    frame.to_parquet(parquet)
    for path in (jsonl, csv, parquet):
        df = load_table(path)
        assert df.to_dict("records") == ROWS, path.name
    assert load_table(jsonl, fmt="debian-snapshot").to_dict("records") == ROWS


def test_detect_format():
    assert detect_format(Path("x.json.gz")) == "jsonl"
    assert detect_format(Path("x_Packages.lz4")) == "debian"
    assert detect_format(Path("x.pq")) == "parquet"
    with pytest.raises(InputError, match="cannot tell the format"):
        detect_format(Path("x.bin"))


@pytest.mark.parametrize(
    ("name", "content", "fmt", "message"),
    [
        ("empty.jsonl", b"", None, "no rows"),
        ("empty.csv", b"a,b\n", None, "no rows"),
        ("blank.csv", b"", None, "no rows"),
        ("bad.jsonl", b'{"a": 1}\n{"a": 2\n', None, "line 2 is not valid JSON"),
        ("list.jsonl", b"[1, 2]\n", None, "line 1 is not a JSON object"),
        ("latin.csv", b"a,b\n1,caf\xe9\n", None, r"not UTF-8 at line 2, byte offset 9"),
        ("latin_Packages", b"Package: x\nDescription: \xff\n", None, "not UTF-8 at line 2"),
        ("bad.parquet", b"not parquet", None, "not a readable Parquet file"),
        ("x.jsonl", b'{"a": 1}\n', "yaml", "unknown format 'yaml'"),
        ("bad.jsonl.gz", b"not gzip", None, "cannot decompress"),
    ],
)
def test_bad_input_is_one_line_input_error(tmp_path, name, content, fmt, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        load_table(path, fmt=fmt)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_table(tmp_path / "nope.csv")
