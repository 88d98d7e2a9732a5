"""Bundle manifest: {file name: sha256} for every bundle file, checked before anything is loaded.

Imports only the standard library so the serving path (runtime.py) can use it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from modelfab.atomic import write_text
from modelfab.errors import IntegrityError, NotFoundError

MANIFEST = "manifest.json"
MODEL = "model.onnx"
TOKENIZER = "tokenizer.json"
LABELS = "labels.json"
PREPROCESS = "preprocess.json"
CARD = "card.json"
REQUIRED = (MODEL, TOKENIZER, LABELS, PREPROCESS, CARD)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(bundle_dir: Path) -> dict[str, str]:
    """Hash every file in `bundle_dir` (except the manifest itself) into manifest.json."""
    manifest = {
        p.name: sha256_file(p)
        for p in sorted(bundle_dir.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    write_text(bundle_dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def verify_bundle(path: Path, required: tuple[str, ...] = REQUIRED) -> dict[str, str]:
    """Check a bundle against its manifest and return the manifest.

    `required` names the files the manifest must list (other bundle kinds, such as the serving
    heads and backbones in export/heads.py, require other files).

    Raises NotFoundError if the bundle does not exist, IntegrityError (one line naming the file)
    if a file is missing, unlisted, or does not match its hash.
    """
    path = Path(path)
    if not path.is_dir():
        raise NotFoundError(f"bundle not found: {path}")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IntegrityError(f"bundle {path}: {MANIFEST} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"bundle {path}: {MANIFEST} is unreadable ({exc})") from None
    if not isinstance(manifest, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in manifest.items()
    ):
        raise IntegrityError(f"bundle {path}: {MANIFEST} is not a {{file: sha256}} mapping")
    for name in required:
        if name not in manifest:
            raise IntegrityError(f"bundle {path}: {name} is not listed in {MANIFEST}")
    for name, expected in sorted(manifest.items()):
        if Path(name).name != name or name in ("", ".", "..", MANIFEST):
            raise IntegrityError(f"bundle {path}: {MANIFEST} lists an invalid file name {name!r}")
        file = path / name
        if not file.is_file():
            raise IntegrityError(f"bundle {path}: {name} is listed in {MANIFEST} but missing")
        if sha256_file(file) != expected:
            raise IntegrityError(f"bundle {path}: {name} does not match its sha256 in {MANIFEST}")
    extra = sorted(p.name for p in path.iterdir() if p.name != MANIFEST and p.name not in manifest)
    if extra:
        raise IntegrityError(f"bundle {path}: {extra[0]} is not listed in {MANIFEST}")
    return manifest


def dir_bytes(path: Path) -> int:
    """Total size of the files directly inside `path` (a bundle is flat)."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())
