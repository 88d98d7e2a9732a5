"""Produce the shared-backbone serving form (export/heads.py) from a teacher and its adapted head.

`export_backbone` writes the frozen teacher encoder (pooling and normalisation included) as a
backbone bundle, fp32 ONNX checked against PyTorch, then dynamic int8; `export_head` writes a
LogisticHead or MLPHead fitted on that encoder's features as a head bundle. Heads fitted on the
same frozen encoder share one backbone; a teacher whose body was tuned (finetune, contrastive,
lora) has a backbone of its own.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modelfab.errors import InputError, IntegrityError
from modelfab.export import onnx_export
from modelfab.export.bundle import _preprocess
from modelfab.export.heads import EMBEDDING, write_backbone_bundle, write_head_bundle
from modelfab.export.runtime import encode, load_tokenizer


def _export_embedding_onnx(module: torch.nn.Module, path: Path, max_length: int) -> Path:
    dynamic = {0: "batch", 1: "sequence"}
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer noise; parity is checked numerically below
        torch.onnx.export(
            module,
            onnx_export._dummy_inputs(max_length),
            str(path),
            input_names=list(onnx_export.INPUT_NAMES),
            output_names=[EMBEDDING],
            opset_version=onnx_export.DEFAULT_OPSET,
            dynamo=False,
            dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, EMBEDDING: {0: "batch"}},
            do_constant_folding=True,
        )
    return path


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
        fp32 = _export_embedding_onnx(encoder.module, Path(tmp) / "backbone.fp32.onnx", max_length)
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
