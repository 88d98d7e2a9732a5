"""Write a self-contained serving bundle: int8 ONNX + tokenizer + labels + card + manifest.

Each format boundary is checked: tokenizer (HF vs the bundle's tokenizers.Tokenizer, exact ids),
PyTorch -> fp32 ONNX (max |logit diff| <= atol, else IntegrityError), fp32 -> int8 (argmax
agreement and max probability difference on calib_texts, recorded in card.json).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch

from modelfab.atomic import staged_dir, write_text
from modelfab.errors import InputError, IntegrityError
from modelfab.export import composed, onnx_export
from modelfab.export.manifest import (
    CARD,
    LABELS,
    MODEL,
    PREPROCESS,
    TOKENIZER,
    dir_bytes,
    verify_bundle,
    write_manifest,
)
from modelfab.export.runtime import OPTIMIZATION_LEVELS, encode, load_tokenizer, softmax

__all__ = ["BundleInfo", "ExportRecipe", "export_bundle", "verify_bundle"]

QUANTIZATIONS = ("dynamic-int8", "static-int8", "fp32")


@dataclass(frozen=True)
class ExportRecipe:
    """How the ONNX graph in the bundle is made: quantization and the onnxruntime graph
    optimisation level the runtime applies when it loads the bundle."""

    quantization: str = "dynamic-int8"
    optimization: str = "all"  # onnxruntime level: disable, basic, extended, all

    def __post_init__(self) -> None:
        if self.quantization not in QUANTIZATIONS:
            raise InputError(
                f"quantization must be one of {', '.join(QUANTIZATIONS)}, not {self.quantization!r}"
            )
        if self.optimization not in OPTIMIZATION_LEVELS:
            raise InputError(
                f"optimization must be one of {', '.join(OPTIMIZATION_LEVELS)}, "
                f"not {self.optimization!r}"
            )

    @property
    def name(self) -> str:
        suffix = "" if self.optimization == "all" else f"-opt-{self.optimization}"
        return self.quantization.replace("dynamic-", "") + suffix


@dataclass(frozen=True)
class BundleInfo:
    path: Path
    size_bytes: int  # all bundle files, manifest included
    fp32_size: int  # the fp32 ONNX (kept out of the bundle unless the recipe is fp32)
    int8_size: int  # the bundle's model.onnx, whatever its quantization
    parity: dict  # check_parity() of PyTorch vs fp32 ONNX


def _write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _check_inputs(labels, card, max_length, calib_texts) -> None:
    if not labels or not all(isinstance(x, str) and x for x in labels):
        raise InputError("labels must be a non-empty list of non-empty strings")
    if len(set(labels)) != len(labels):
        raise InputError("labels must be unique")
    if not isinstance(card, dict):
        raise InputError("card must be a dict")
    try:
        json.dumps(card)
    except (TypeError, ValueError) as exc:
        raise InputError(f"card is not JSON-serializable: {exc}") from None
    if max_length < 2:
        raise InputError(f"max_length must be >= 2, got {max_length}")
    if not calib_texts or not all(isinstance(t, str) for t in calib_texts):
        raise InputError("calib_texts must be a non-empty list of strings")


def _preprocess(tokenizer, max_length: int, optimization: str = "all") -> dict:
    if tokenizer.pad_token_id is None:
        raise InputError("tokenizer has no pad token")
    return {
        "max_length": int(max_length),
        "pad_id": int(tokenizer.pad_token_id),
        "pad_token": str(tokenizer.pad_token),
        "padding_side": str(getattr(tokenizer, "padding_side", "right")),
        # Lower-casing and accent stripping live in tokenizer.json's normalizer.
        "input_names": list(onnx_export.INPUT_NAMES),
        "output": "logits",
        "graph_optimization": optimization,
    }


def _check_tokenizer(tokenizer, bundle_inputs: dict[str, np.ndarray], texts, max_length) -> None:
    """The bundle tokenizer must give the ids the model was trained/evaluated with."""
    ref = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np"
    )
    for name in onnx_export.INPUT_NAMES:
        if not np.array_equal(np.asarray(ref[name], dtype=np.int64), bundle_inputs[name]):
            raise IntegrityError(
                f"bundle {TOKENIZER} encodes calib_texts differently from the source tokenizer "
                f"({name})"
            )


QUANTIZATION_DETAILS = {
    "dynamic-int8": {"method": "dynamic", "weights": "QInt8", "ops": ["MatMul", "Gather"]},
    "static-int8": {
        "method": "static (MinMax calibration on calib_texts), QDQ",
        "weights": "QInt8 per channel",
        "activations": "QUInt8",
        "ops": ["MatMul"],
    },
    "fp32": {"method": "none"},
}


def _quantize(recipe: ExportRecipe, fp32_path: Path, out: Path, tokenizer, calib_texts) -> Path:
    if recipe.quantization == "dynamic-int8":
        if recipe.optimization == "all":
            return onnx_export.quantize_int8(fp32_path, out)
        # Pre-processing would optimise the graph offline and hide the level being measured.
        return onnx_export.quantize_int8(fp32_path, out, pre_optimize=False)
    if recipe.quantization == "static-int8":
        # One text per batch: calibration sees real, unpadded lengths.
        batches = [encode(tokenizer, [t]) for t in calib_texts]
        return onnx_export.quantize_static_int8(fp32_path, out, batches)
    return Path(shutil.copy(fp32_path, out))


def _composable(model: torch.nn.Module, recipe: ExportRecipe) -> bool:
    """Whether `model` can take its encoder graph from the cache: an encoder + head classifier
    under the default recipe (other recipes quantize or optimise the whole graph themselves)."""
    parts = all(isinstance(getattr(model, a, None), torch.nn.Module) for a in ("encoder", "head"))
    return parts and recipe.quantization == "dynamic-int8" and recipe.optimization == "all"


def export_bundle(
    model: torch.nn.Module,
    tokenizer,
    labels: list[str],
    out_dir: Path,
    card: dict,
    max_length: int,
    calib_texts: list[str],
    *,
    atol: float = onnx_export.DEFAULT_ATOL,
    opset: int = onnx_export.DEFAULT_OPSET,
    min_int8_agreement: float = 0.0,
    recipe: ExportRecipe | None = None,
    encoder_cache: Path | None = None,
) -> BundleInfo:
    """Export `model` + `tokenizer` (a HF fast tokenizer) as a bundle at `out_dir`, atomically.

    `card` is copied into card.json with an added (replaced, if present) "export" section.
    Raises IntegrityError if fp32 parity exceeds `atol` or int8 argmax agreement on calib_texts
    is below `min_int8_agreement`; nothing is left at `out_dir` then.

    With `encoder_cache`, a `model` made of `.encoder` and `.head` under the default recipe
    (dynamic int8, full graph optimization) takes its encoder's graphs from that cache
    (export/composed.py) and exports only the head; the checks are the same.
    """
    _check_inputs(labels, card, max_length, calib_texts)
    recipe = recipe or ExportRecipe()
    out_dir = Path(out_dir)
    preprocess = _preprocess(tokenizer, max_length, recipe.optimization)
    with (
        staged_dir(out_dir) as stage,
        tempfile.TemporaryDirectory(prefix="modelfab-export-") as tmp,
    ):
        tokenizer.backend_tokenizer.save(str(stage / TOKENIZER))
        _write_json(stage / PREPROCESS, preprocess)
        _write_json(stage / LABELS, list(labels))
        bundle_tokenizer = load_tokenizer(stage / TOKENIZER, preprocess)
        inputs = encode(bundle_tokenizer, calib_texts)
        _check_tokenizer(tokenizer, inputs, calib_texts, max_length)
        expected = onnx_export.torch_logits(model, inputs)
        if expected.shape[1] != len(labels):
            raise InputError(f"model has {expected.shape[1]} outputs but {len(labels)} labels")

        exporter = "torch.onnx.export (TorchScript, dynamo=False)"
        if encoder_cache is not None and _composable(model, recipe):
            encoder, head = cast(torch.nn.Module, model.encoder), cast(torch.nn.Module, model.head)
            fp32_enc, int8_enc = composed.cached_encoder_graphs(
                encoder, encoder_cache, max_length, opset
            )
            first = {k: v[:1] for k, v in inputs.items()}
            dim = int(onnx_export.torch_logits(encoder, first).shape[1])
            fp32_path = composed.join(fp32_enc, head, dim, Path(tmp) / "model.fp32.onnx", opset)
            model_tmp = composed.join(int8_enc, head, dim, Path(tmp) / "model.q.onnx", opset)
            exporter += f"; encoder graph from the cache ({fp32_enc.name[:12]}), head joined"
        else:
            fp32_path = onnx_export.export_onnx(
                model, Path(tmp) / "model.fp32.onnx", max_length, opset
            )
            # Quantize outside the stage so no intermediate file can slip into the manifest.
            model_tmp = _quantize(
                recipe, fp32_path, Path(tmp) / "model.q.onnx", bundle_tokenizer, calib_texts
            )
        int8_path = Path(shutil.move(model_tmp, stage / MODEL))

        fp32_logits = onnx_export.onnx_logits(fp32_path, inputs)
        parity = onnx_export.compare_logits(expected, fp32_logits, fp32_path, atol=atol)
        p32 = softmax(fp32_logits)
        p8 = softmax(onnx_export.onnx_logits(int8_path, inputs))
        agreement = float(np.mean(p32.argmax(axis=1) == p8.argmax(axis=1)))
        if agreement < min_int8_agreement:
            raise IntegrityError(
                f"{recipe.quantization} model agrees with fp32 on {agreement:.1%} of calib_texts "
                f"< required {min_int8_agreement:.1%}"
            )
        fp32_size, int8_size = fp32_path.stat().st_size, int8_path.stat().st_size
        export = {
            "format": "onnx",
            "opset": opset,
            "exporter": exporter,
            "quantization": QUANTIZATION_DETAILS[recipe.quantization],
            "graph_optimization": recipe.optimization,
            "max_length": int(max_length),
            "parity_fp32_vs_torch": {
                "max_abs_diff": parity["max_abs_diff"],
                "atol": atol,
                "n_texts": len(calib_texts),
            },
            "int8_vs_fp32": {
                "argmax_agreement": agreement,
                "min_agreement": min_int8_agreement,
                "max_prob_diff": float(np.max(np.abs(p32 - p8))),
                "n_texts": len(calib_texts),
            },
            "sizes": {
                "fp32_onnx_bytes": fp32_size,
                "int8_onnx_bytes": int8_size,
                "int8_ratio": int8_size / fp32_size,
            },
        }
        _write_json(stage / CARD, {**card, "export": export})
        write_manifest(stage)
        size_bytes = dir_bytes(stage)
    return BundleInfo(
        path=out_dir, size_bytes=size_bytes, fp32_size=fp32_size, int8_size=int8_size, parity=parity
    )
