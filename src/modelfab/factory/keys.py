"""Content hashes that decide what a factory run may skip.

A scenario's *build key* is the sha256 of everything its models depend on: the resolved
scenario spec (its fingerprint names the dataset version by content hash), the build config,
the teacher's weights (not its path) and modelfab's version. Model ids are derived from it
(`pipeline.build.variant_id`), so an unchanged scenario has the same ids as before and is found
in the registry instead of being built again.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from modelfab import __version__
from modelfab.errors import InputError
from modelfab.export.manifest import sha256_file
from modelfab.pipeline.build import variant_id
from modelfab.pipeline.config import BuildConfig


@lru_cache(maxsize=16)
def teacher_digest(path: str | None) -> str:
    """The teacher's weights digest (sha256 over config, tokenizer and weight files)."""
    from modelfab.teachers.hf_encoder import resolve_model_dir, weights_digest

    return weights_digest(resolve_model_dir(path))


def file_digest(path: str) -> str:
    """sha256 of a file's bytes; InputError when it is missing."""
    if not Path(path).is_file():
        raise InputError(f"{path}: no such file")
    return sha256_file(Path(path))


def build_key(scenario_id: str, config: BuildConfig) -> str:
    """sha256 of the resolved spec fingerprint, the config, the teacher weights (and the student
    body's, when one is named: its bytes, not its path) and version."""
    cfg = config.to_dict()
    cfg["teacher"] = {**cfg["teacher"], "path": teacher_digest(config.teacher.path)}
    if config.student.body is not None:
        cfg["student"] = {**cfg["student"], "body": file_digest(config.student.body)}
    canonical = json.dumps(
        {"scenario": scenario_id, "config": cfg, "modelfab": __version__},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def teacher_model_id(key: str) -> str:
    """The adapted teacher's model id for a build key: present in the registry exactly when
    the build committed (all of a build's models are written in one transaction)."""
    return variant_id(key, "teacher")
