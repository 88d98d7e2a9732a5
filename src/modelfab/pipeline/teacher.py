"""Load the teacher once per process, with its precision chosen by measurement."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from modelfab.atomic import write_text
from modelfab.bench.hardware import fingerprint
from modelfab.pipeline.config import TeacherConfig
from modelfab.teachers.hf_encoder import EncoderConfig, HFTextEncoder
from modelfab.teachers.precision import measure_precision

_LOADED: dict[tuple, HFTextEncoder] = {}


def fingerprint_cpu() -> dict:
    """What the precision decision depends on: the CPU, its flags and the torch build."""
    hw = fingerprint()
    return {
        "cpu": hw.get("cpu_model"),
        "flags": hw.get("flags"),
        "torch": hw.get("versions", {}).get("torch"),
    }


def choose_precision(cfg: TeacherConfig, sample: list[str], home: Path) -> dict:
    """Measured fp32-vs-bf16 decision, cached per teacher weights and CPU in MODELFAB_HOME."""
    probe = _get(EncoderConfig(path=cfg.path, max_length=cfg.max_length, precision="fp32"))
    cpu = hashlib.sha256(json.dumps(fingerprint_cpu(), sort_keys=True).encode()).hexdigest()[:12]
    key = f"{probe.weights_id[:16]}-{cfg.max_length}-{cpu}"
    cache = home / "cache" / f"precision-{key}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    decision = measure_precision(probe, sample)
    write_text(cache, json.dumps(decision, indent=2))
    return decision


def _get(cfg: EncoderConfig) -> HFTextEncoder:
    key = (cfg.path, cfg.max_length, cfg.precision, cfg.batch_size)
    if key not in _LOADED:
        _LOADED[key] = HFTextEncoder(cfg)
    return _LOADED[key]


def load_teacher(cfg: TeacherConfig, sample: list[str], home: Path) -> tuple[HFTextEncoder, dict]:
    if cfg.precision == "auto":
        decision = choose_precision(cfg, sample, home)
    else:
        decision = {"choice": cfg.precision, "rule": "set by the user"}
    teacher = _get(
        EncoderConfig(path=cfg.path, max_length=cfg.max_length, precision=decision["choice"])
    )
    return teacher, decision
