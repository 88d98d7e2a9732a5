"""Produce the shared-backbone serving form (export/heads.py) from a teacher and its adapted head.

`export_backbone` writes the frozen teacher encoder (pooling and normalisation included) as a
backbone bundle, fp32 ONNX checked against PyTorch, then dynamic int8; `export_head` writes a
LogisticHead or MLPHead fitted on that encoder's features as a head bundle. Heads fitted on the
same frozen encoder share one backbone; a teacher whose body was tuned (finetune, contrastive,
lora) has a backbone of its own.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modelfab.errors import InputError, IntegrityError
from modelfab.export import onnx_export
from modelfab.export.bundle import _preprocess
from modelfab.export.heads import EMBEDDING, write_backbone_bundle, write_head_bundle
from modelfab.export.runtime import encode, load_tokenizer


def _run(path: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run([EMBEDDING], inputs)[0], dtype=np.float32)


def export_backbone(
    encoder: Any,
    root: Path,
    calib_texts: list[str],
    *,
    quantize: bool = True,
    atol: float = onnx_export.DEFAULT_ATOL,
    min_cosine: float = 0.9,
) -> Path:
    """Write `encoder` (an HFTextEncoder: .module, .tokenizer, .config.max_length) as a backbone
    bundle under `root/<sha256>/` and return that folder."""
    if not calib_texts or not all(isinstance(t, str) for t in calib_texts):
        raise InputError("calib_texts must be a non-empty list of strings")
    max_length = int(encoder.config.max_length)
    preprocess = {**_preprocess(encoder.tokenizer, max_length), "dim": int(encoder.dim)}
    with tempfile.TemporaryDirectory(prefix="modelfab-backbone-") as tmp:
        tokenizer_json = Path(tmp) / "tokenizer.json"
        encoder.tokenizer.backend_tokenizer.save(str(tokenizer_json))
        inputs = encode(load_tokenizer(tokenizer_json, preprocess), calib_texts)
        fp32 = onnx_export.export_onnx(
            encoder.module, Path(tmp) / "backbone.fp32.onnx", max_length, output_name=EMBEDDING
        )
        with torch.no_grad():
            reference = (
                encoder.module(*(torch.from_numpy(inputs[n]) for n in onnx_export.INPUT_NAMES))
                .float()
                .numpy()
            )
        diff = float(np.max(np.abs(_run(fp32, inputs) - reference)))
        if diff > atol:
            raise IntegrityError(f"backbone ONNX differs from PyTorch by {diff:.2e} > {atol:.0e}")
        graph = (
            onnx_export.quantize_int8(fp32, Path(tmp) / "backbone.int8.onnx") if quantize else fp32
        )
        out = _run(graph, inputs)
        cosine = float(
            np.min(
                (out * reference).sum(1)
                / (np.linalg.norm(out, axis=1) * np.linalg.norm(reference, axis=1) + 1e-12)
            )
        )
        if cosine < min_cosine:
            raise IntegrityError(
                f"int8 backbone embeddings reach cosine {cosine:.3f} < {min_cosine}"
            )
        card = {
            "teacher_id": getattr(encoder, "id", None),
            "export": {
                "quantization": "dynamic-int8" if quantize else "fp32",
                "parity_fp32_vs_torch": {"max_abs_diff": diff, "atol": atol},
                "min_cosine_vs_torch": cosine,
                "n_texts": len(calib_texts),
            },
        }
        return write_backbone_bundle(
            root, onnx_path=graph, tokenizer_json=tokenizer_json, preprocess=preprocess, card=card
        )


def head_tensors(head: Any) -> tuple[str, dict[str, np.ndarray]]:
    """(kind, tensors) of an adapted head: LogisticHead (weight_, bias_) or MLPHead (net_:
    Linear, GELU, Dropout, Linear)."""
    if hasattr(head, "weight_") and hasattr(head, "bias_"):
        return "logistic", {"weight": np.asarray(head.weight_), "bias": np.asarray(head.bias_)}
    net = getattr(head, "net_", None)
    if isinstance(net, torch.nn.Sequential):
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        acts = [m for m in net if not isinstance(m, torch.nn.Linear | torch.nn.Dropout)]
        if len(linears) == 2 and len(acts) == 1 and isinstance(acts[0], torch.nn.GELU):
            first, second = (lin.state_dict() for lin in linears)
            return "mlp", {
                "w1": first["weight"].numpy(),
                "b1": first["bias"].numpy(),
                "w2": second["weight"].numpy(),
                "b2": second["bias"].numpy(),
            }
    raise InputError(f"cannot export {type(head).__name__} as a serving head (logreg or mlp only)")


def export_head(
    head: Any, labels: list[str], backbone_dir: Path, out_dir: Path, card: dict | None = None
) -> Path:
    """Write a fitted head over the backbone bundle at `backbone_dir` as a head bundle."""
    kind, tensors = head_tensors(head)
    return write_head_bundle(
        out_dir,
        kind=kind,
        tensors=tensors,
        labels=labels,
        backbone_sha256=Path(backbone_dir).name,
        card=card,
    )


# ---- from a registered adapted teacher ----------------------------------------------------

# Parity texts for a backbone exported outside a build (the scenario's texts are not at hand).
CALIB_TEXTS = [
    "3D first-person shooter with network play",
    "a small text editor with syntax highlighting",
    "molecular biology analysis toolkit",
    "library for parsing and writing image files",
    "command-line tool to synchronise files over ssh",
    "documentation for the python programming language",
]
TEACHER_FILES = ("head.safetensors", "adapter.json")  # pipeline/build.py save_teacher()


def _teacher_head(teacher_dir: Path) -> tuple[str, dict[str, np.ndarray], dict]:
    """(kind, tensors, adapter.json) of a teacher artifact, verified against its manifest."""
    import json

    from safetensors.numpy import load_file

    from modelfab.export.manifest import verify_bundle

    verify_bundle(teacher_dir, TEACHER_FILES)
    if (teacher_dir / "encoder.safetensors").is_file():
        raise InputError(
            f"teacher {teacher_dir.name[:12]} has a tuned body: it cannot share the frozen "
            "backbone; serve its teacher-*-int8 bundle instead"
        )
    adapter = json.loads((teacher_dir / "adapter.json").read_text(encoding="utf-8"))
    state = load_file(str(teacher_dir / "head.safetensors"))
    if adapter.get("strategy") == "logreg" and set(state) == {"weight", "bias"}:
        return "logistic", state, adapter
    # MLPHead: Sequential(Linear, GELU, Dropout, Linear) -> 0.* and 3.*
    if adapter.get("strategy") == "mlp" and set(state) == {
        "0.weight",
        "0.bias",
        "3.weight",
        "3.bias",
    }:
        tensors = {"w1": state["0.weight"], "b1": state["0.bias"]}
        return "mlp", {**tensors, "w2": state["3.weight"], "b2": state["3.bias"]}, adapter
    raise InputError(
        f"teacher {teacher_dir.name[:12]} was adapted by {adapter.get('strategy')!r}: only "
        "logreg and mlp heads on the frozen encoder can be served over a shared backbone"
    )


def _find_backbone(root: Path, teacher_id: str) -> Path | None:
    """The backbone already exported for this encoder (same weights, pooling, max_length)."""
    import json

    for card in sorted(Path(root).glob("*/card.json")):
        if json.loads(card.read_text(encoding="utf-8")).get("teacher_id") == teacher_id:
            return card.parent
    return None


def register_teacher_head(teacher_model_id: str, registry: Any = None) -> tuple[str, Path]:
    """Export a registered teacher's head as a head bundle over its encoder's backbone (exported
    once per encoder into artifacts()/backbones/) and register it as a baseline model whose
    parent is the teacher. Returns (model id, backbone folder)."""
    import shutil
    import uuid

    from modelfab import paths
    from modelfab.export.manifest import dir_bytes
    from modelfab.registry import Registry
    from modelfab.teachers.hf_encoder import EncoderConfig, HFTextEncoder

    registry = registry or Registry()
    teacher = registry.get_model(teacher_model_id)
    if teacher.role != "teacher" or not teacher.artifact_path:
        raise InputError(f"model {teacher.id[:12]} is a {teacher.role}, not an adapted teacher")
    kind, tensors, adapter = _teacher_head(Path(teacher.artifact_path))
    source = adapter["lineage"]["teacher"]["path"]
    encoder = HFTextEncoder(EncoderConfig(path=source, max_length=int(adapter["max_length"])))
    backbones = paths.artifacts() / "backbones"
    backbone = _find_backbone(backbones, encoder.id) or export_backbone(
        encoder, backbones, CALIB_TEXTS
    )
    model_id = uuid.uuid4().hex
    out = paths.artifacts() / "models" / model_id
    strategy = str(adapter["strategy"])
    card = {"lineage": {**adapter["lineage"], "model_id": model_id, "parent_model_id": teacher.id}}
    write_head_bundle(
        out,
        kind=kind,
        tensors=tensors,
        labels=list(adapter["classes"]),
        backbone_sha256=backbone.name,
        card=card,
    )
    try:
        registry.add_model(
            model_id=model_id,
            run_id=teacher.run_id,
            scenario_id=teacher.scenario_id,
            name=f"teacher-{strategy}-head",
            role="baseline",
            family=f"hf-encoder+{strategy}",
            parent_id=teacher.id,
            recipe={"form": "head", "kind": kind, "backbone_sha256": backbone.name},
            artifact_path=str(out),
            size_bytes=dir_bytes(out),
        )
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return model_id, backbone
