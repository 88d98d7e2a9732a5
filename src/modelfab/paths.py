"""Where modelfab keeps things: MODELFAB_HOME (default ./.modelfab) holds registry and artifacts."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The modelfab home directory, created on first use."""
    root = Path(os.environ.get("MODELFAB_HOME", ".modelfab")).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def registry_url() -> str:
    """SQLAlchemy URL of the registry; SQLite inside MODELFAB_HOME unless MODELFAB_REGISTRY_URL."""
    return os.environ.get("MODELFAB_REGISTRY_URL") or f"sqlite:///{home() / 'registry.sqlite'}"


def artifacts() -> Path:
    path = home() / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def debian_snapshot() -> Path:
    """The Debian package snapshot used by the demo fallback, the bench and slow tests:
    MODELFAB_DEBIAN_SNAPSHOT, else ../shared/data/debian-packages.jsonl.gz beside the checkout."""
    override = os.environ.get("MODELFAB_DEBIAN_SNAPSHOT")
    if override:
        return Path(override).expanduser()
    checkout = Path(__file__).resolve().parents[2]  # src/modelfab/paths.py -> repository root
    return checkout.parent / "shared" / "data" / "debian-packages.jsonl.gz"
