"""Debian apt index files (Packages, Translation-en) as the same table as the snapshot.

A Packages file is a list of RFC 822-style stanzas. Modern indexes carry only the summary and a
`Description-md5`; the long text lives in a Translation-en file keyed by (package, md5), so we
join the two. Output columns match debian-packages.jsonl.gz: package, section, summary,
description, tags, source.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from modelfab.data.rawio import decode_utf8, read_bytes

APT_LISTS = Path("/var/lib/apt/lists")
COLUMNS = ["package", "section", "summary", "description", "tags", "source"]
_FIELD = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*):[ \t]?(.*)$")


def iter_stanzas(text: str) -> Iterator[dict[str, str]]:
    """Yield each stanza as {field: value}; continuation lines are kept, joined by newlines."""
    fields: dict[str, str] = {}
    last: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, None
        elif line[0] in " \t":
            if last is not None:  # a continuation line of the previous field
                fields[last] += "\n" + line
        else:
            match = _FIELD.match(line)
            if match is None:
                continue  # not a field; apt itself ignores such lines
            last = match.group(1)
            fields[last] = match.group(2)
    if fields:
        yield fields


def split_description(value: str) -> tuple[str, str]:
    """(summary, long description); ' .' continuation lines become blank paragraph breaks."""
    first, *rest = value.split("\n")
    body = []
    for line in rest:
        line = line[1:] if line[:1] in (" ", "\t") else line
        body.append("" if line.strip() == "." else line)
    return first.strip(), "\n".join(body).strip("\n")


def _tags(value: str) -> list[str]:
    return [tag.strip() for tag in value.replace("\n", " ").split(",") if tag.strip()]


def read_translations(paths: list[Path]) -> dict[tuple[str, str], str]:
    """Long descriptions keyed by (package, md5) and, as a fallback, by (package, "")."""
    long: dict[tuple[str, str], str] = {}
    for path in paths:
        text = decode_utf8(read_bytes(path), path)
        for stanza in iter_stanzas(text):
            package, desc = stanza.get("Package"), stanza.get("Description-en")
            if not package or desc is None:
                continue
            body = split_description(desc)[1]
            long.setdefault((package, stanza.get("Description-md5", "")), body)
            long.setdefault((package, ""), body)
    return long


def sibling_translations(packages_file: Path) -> list[Path]:
    """Translation-en files next to an apt Packages file, as apt stores them in its lists dir."""
    return sorted(packages_file.parent.glob("*_i18n_Translation-en*"))


def parse_packages(text: str, translations: dict[tuple[str, str], str]) -> pd.DataFrame:
    """One row per package (first stanza wins), with long text joined from `translations`."""
    rows: dict[str, dict[str, object]] = {}
    for stanza in iter_stanzas(text):
        package = stanza.get("Package", "").strip()
        if not package or package in rows:
            continue
        summary, description = split_description(stanza.get("Description", ""))
        if not description:
            md5 = stanza.get("Description-md5", "").strip()
            description = translations.get((package, md5)) or translations.get((package, ""), "")
        source = stanza.get("Source", "").strip().split(" ", 1)[0] or package
        rows[package] = {
            "package": package,
            "section": stanza.get("Section", "").strip().rsplit("/", 1)[-1],
            "summary": summary,
            "description": description,
            "tags": _tags(stanza.get("Tag", "")),
            "source": source,
        }
    return pd.DataFrame(list(rows.values()), columns=COLUMNS)


def debian_index_paths(lists_dir: Path = APT_LISTS) -> tuple[list[Path], list[Path]]:
    """(Packages files, Translation-en files) that apt has downloaded on this machine."""
    if not lists_dir.is_dir():
        return [], []
    packages = sorted(p for p in lists_dir.glob("*_Packages*") if not p.name.endswith(".diff"))
    return packages, sorted(lists_dir.glob("*_i18n_Translation-en*"))
