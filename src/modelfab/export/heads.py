"""Separable serving form of a teacher-based model: one shared *backbone* bundle plus small
*head* bundles over it.

A backbone bundle (directory named by the sha256 of its model.onnx) holds an ONNX graph
(input_ids, attention_mask) -> embedding (B, D), its tokenizer and preprocessing. A head bundle
holds a logistic or one-hidden-layer MLP head as safetensors, applied in numpy, and names its
backbone by that sha256. A server that hosts many heads over one backbone runs the backbone
once per batch and keeps one copy of it in memory; each extra model costs only its head.

Standard library, numpy, safetensors and onnxruntime-free: the serving path imports this module
(no torch, no transformers). The torch side that produces these bundles is export/shared.py.

    head bundle                      backbone bundle (<sha256 of model.onnx>/)
      head.json  kind, dims, sha       model.onnx       (input_ids, attention_mask) -> embedding
      head.safetensors  weights        tokenizer.json
      labels.json                      preprocess.json  max_length, pad, "output": "embedding"
      card.json                        card.json
      manifest.json                    manifest.json
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from modelfab.atomic import staged_dir, write_text
from modelfab.errors import InputError, IntegrityError
from modelfab.export.manifest import (
    CARD,
    LABELS,
    MODEL,
    PREPROCESS,
    TOKENIZER,
    verify_bundle,
    write_manifest,
)

HEAD_JSON = "head.json"
HEAD_WEIGHTS = "head.safetensors"
HEAD_FORMAT = "modelfab-head/1"
BACKBONE_FORMAT = "modelfab-backbone/1"
HEAD_REQUIRED = (HEAD_JSON, HEAD_WEIGHTS, LABELS, CARD)
BACKBONE_REQUIRED = (MODEL, TOKENIZER, PREPROCESS, CARD)
EMBEDDING = "embedding"
# Tensor names and shapes per head kind: (n_classes C, dim D, hidden H).
HEAD_TENSORS = {
    "logistic": {"weight": ("C", "D"), "bias": ("C",)},
    "mlp": {"w1": ("H", "D"), "b1": ("H",), "w2": ("C", "H"), "b2": ("C",)},
}


def is_head_bundle(path: Path) -> bool:
    return (Path(path) / HEAD_JSON).is_file()


def _is_sha256(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


def _write_json(path: Path, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"bundle file {path} is unreadable ({exc})") from None


def _check_tensors(kind: str, tensors: dict[str, np.ndarray], n_labels: int) -> dict[str, int]:
    """Dimensions {C, D, H} of a head's tensors; InputError when they do not fit `kind`."""
    if kind not in HEAD_TENSORS:
        raise InputError(f"head kind must be one of {', '.join(HEAD_TENSORS)}, not {kind!r}")
    spec = HEAD_TENSORS[kind]
    if set(tensors) != set(spec):
        raise InputError(f"{kind} head needs tensors {sorted(spec)}, got {sorted(tensors)}")
    dims: dict[str, int] = {"C": n_labels}
    for name, axes in spec.items():
        shape = np.shape(tensors[name])
        if len(shape) != len(axes):
            raise InputError(f"head tensor {name} must have {len(axes)} dimensions, got {shape}")
        for axis, size in zip(axes, shape, strict=True):
            if dims.setdefault(axis, int(size)) != size:
                raise InputError(f"head tensor {name} has {axis}={size}, expected {dims[axis]}")
    return dims


def write_head_bundle(
    out_dir: Path,
    *,
    kind: str,
    tensors: dict[str, np.ndarray],
    labels: list[str],
    backbone_sha256: str,
    card: dict | None = None,
) -> Path:
    """Write a head bundle at `out_dir` atomically (see the module docstring for the layout)."""
    if not labels or len(set(labels)) != len(labels) or not all(isinstance(x, str) for x in labels):
        raise InputError("labels must be a non-empty list of unique strings")
    if not _is_sha256(backbone_sha256):
        raise InputError(f"backbone_sha256 must be 64 lowercase hex digits: {backbone_sha256!r}")
    dims = _check_tensors(kind, tensors, len(labels))
    out_dir = Path(out_dir)
    with staged_dir(out_dir) as stage:
        weights = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
        save_file(weights, str(stage / HEAD_WEIGHTS))
        meta = {
            "format": HEAD_FORMAT,
            "kind": kind,
            "activation": "gelu" if kind == "mlp" else None,
            "backbone_sha256": backbone_sha256,
            "dim": dims["D"],
            "n_classes": dims["C"],
        }
        _write_json(stage / HEAD_JSON, meta)
        _write_json(stage / LABELS, list(labels))
        _write_json(stage / CARD, {**(card or {}), "serving": {"form": "head", **meta}})
        write_manifest(stage)
    return out_dir


def _gelu(x: np.ndarray) -> np.ndarray:
    """The exact (erf) GELU, as torch.nn.GELU() computes it."""
    from scipy.special import erf

    return (0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))).astype(np.float32)


@dataclass(frozen=True)
class Head:
    """A loaded head: `logits(embeddings)` in numpy."""

    path: Path
    kind: str
    labels: list[str]
    backbone_sha256: str
    dim: int
    tensors: dict[str, np.ndarray]

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(B, D) float32 embeddings -> (B, C) float32 logits."""
        t = self.tensors
        if self.kind == "logistic":
            return x @ t["weight"].T + t["bias"]
        hidden = _gelu(x @ t["w1"].T + t["b1"])
        return hidden @ t["w2"].T + t["b2"]


def load_head(path: Path) -> Head:
    """Verify a head bundle against its manifest, then load it."""
    path = Path(path)
    verify_bundle(path, HEAD_REQUIRED)
    meta = _read_json(path / HEAD_JSON)
    labels = _read_json(path / LABELS)
    if not isinstance(meta, dict) or meta.get("format") != HEAD_FORMAT:
        raise IntegrityError(f"bundle {path}: {HEAD_JSON} is not a {HEAD_FORMAT} description")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise IntegrityError(f"bundle {path}: {LABELS} is not a list of strings")
    if not _is_sha256(meta.get("backbone_sha256")):  # it becomes a folder name: no paths
        raise IntegrityError(f"bundle {path}: backbone_sha256 in {HEAD_JSON} is not a sha256")
    try:
        tensors = load_file(str(path / HEAD_WEIGHTS))
        dims = _check_tensors(str(meta.get("kind")), tensors, len(labels))
    except (InputError, OSError, ValueError) as exc:
        raise IntegrityError(
            f"bundle {path}: {HEAD_WEIGHTS} does not fit {HEAD_JSON} ({exc})"
        ) from None
    return Head(
        path=path,
        kind=str(meta["kind"]),
        labels=list(labels),
        backbone_sha256=str(meta["backbone_sha256"]),
        dim=dims["D"],
        tensors={k: v.astype(np.float32, copy=False) for k, v in tensors.items()},
    )


def backbone_sha256(path: Path) -> str:
    """Verify a backbone bundle and return its id: the sha256 of its model.onnx. The folder
    must be named by it, so a head's backbone_sha256 finds exactly this graph."""
    path = Path(path)
    manifest = verify_bundle(path, BACKBONE_REQUIRED)
    sha = manifest[MODEL]
    if path.name != sha:
        raise IntegrityError(f"backbone bundle {path} must be named by its model sha256 {sha}")
    preprocess = _read_json(path / PREPROCESS)
    if not isinstance(preprocess, dict) or preprocess.get("output") != EMBEDDING:
        raise IntegrityError(f"bundle {path}: {PREPROCESS} does not declare an embedding output")
    return sha


def write_backbone_bundle(
    root: Path, *, onnx_path: Path, tokenizer_json: Path, preprocess: dict, card: dict | None = None
) -> Path:
    """Copy a backbone graph and its tokenizer into `root/<sha256 of the graph>/` atomically and
    return that folder (an existing identical backbone is kept as it is)."""
    from modelfab.export.manifest import sha256_file

    sha = sha256_file(Path(onnx_path))
    out_dir = Path(root) / sha
    if out_dir.is_dir():
        backbone_sha256(out_dir)  # the same graph already there, and intact
        return out_dir
    with staged_dir(out_dir) as stage:
        shutil.copyfile(onnx_path, stage / MODEL)
        shutil.copyfile(tokenizer_json, stage / TOKENIZER)
        _write_json(stage / PREPROCESS, {**preprocess, "output": EMBEDDING})
        _write_json(
            stage / CARD,
            {**(card or {}), "serving": {"form": "backbone", "format": BACKBONE_FORMAT}},
        )
        write_manifest(stage)
    return out_dir
