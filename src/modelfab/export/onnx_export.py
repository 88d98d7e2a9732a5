"""PyTorch classifier -> fp32 ONNX -> dynamic int8 ONNX, with a parity check at each boundary.

The model contract: `forward(input_ids, attention_mask) -> logits`, int64 inputs of shape (B, T),
float32 logits of shape (B, C).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modelfab.errors import InputError, IntegrityError
from modelfab.torchutil import eval_mode

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17
DEFAULT_ATOL = 1e-4


@contextlib.contextmanager
def _quiet_quantizer():
    """onnxruntime's quantizer logs advice on the root logger at WARNING; keep it off screen."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def _dummy_inputs(max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Batch of 2 whose second row is padded: HF attention code drops an all-ones mask at trace
    # time, so an unpadded example would bake "no padding" into the graph.
    seq = max(2, min(max_length, 16))
    input_ids = torch.ones((2, seq), dtype=torch.long)
    attention_mask = torch.ones((2, seq), dtype=torch.long)
    attention_mask[1, seq // 2 :] = 0
    input_ids[1, seq // 2 :] = 0
    return input_ids, attention_mask


def export_onnx(
    model: torch.nn.Module,
    path: Path,
    max_length: int,
    opset: int = DEFAULT_OPSET,
    output_name: str = OUTPUT_NAME,
) -> Path:
    """Export `model` to fp32 ONNX at `path` with dynamic batch and sequence axes; its one output
    is named `output_name` ("logits" for a classifier, "embedding" for an encoder).

    Uses the TorchScript exporter (`dynamo=False`): for HF BERT it is ~25x faster than the
    dynamo exporter, honours opset 17 without a version conversion, and gives the same logits.
    """
    if max_length < 2:
        raise InputError(f"max_length must be >= 2, got {max_length}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {0: "batch", 1: "sequence"}
    with eval_mode(model), torch.inference_mode(False), warnings.catch_warnings():
        # The TorchScript exporter is deprecated and HF code emits tracer warnings; both are noise
        # here because check_parity() verifies the result numerically.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            _dummy_inputs(max_length),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=[output_name],
            opset_version=opset,
            dynamo=False,
            dynamic_axes={
                "input_ids": dynamic,
                "attention_mask": dynamic,
                output_name: {0: "batch"},
            },
            do_constant_folding=True,
        )
    return path


def _as_int64(inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    missing = [name for name in INPUT_NAMES if name not in inputs]
    if missing:
        raise InputError(f"sample inputs lack {', '.join(missing)}")
    out = {}
    for name in INPUT_NAMES:
        value = inputs[name]
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        out[name] = np.asarray(value, dtype=np.int64)
    return out


def torch_logits(model: torch.nn.Module, inputs: Mapping[str, Any]) -> np.ndarray:
    """Logits of `model` on numpy/torch int inputs, as float32 numpy, shape (B, C)."""
    arrays = _as_int64(inputs)
    with eval_mode(model), torch.inference_mode():
        logits = model(**{k: torch.from_numpy(v) for k, v in arrays.items()})
    return logits.float().cpu().numpy()


def onnx_logits(onnx_path: Path, inputs: Mapping[str, Any]) -> np.ndarray:
    """Logits of the ONNX model at `onnx_path` under onnxruntime (CPU), shape (B, C)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], _as_int64(inputs))[0]


def check_parity(
    model: torch.nn.Module,
    onnx_path: Path,
    sample_inputs: Mapping[str, Any],
    atol: float = DEFAULT_ATOL,
) -> dict:
    """Compare PyTorch and onnxruntime logits; raise IntegrityError if they differ by > atol."""
    actual = onnx_logits(onnx_path, sample_inputs)
    return compare_logits(torch_logits(model, sample_inputs), actual, onnx_path, atol)


def compare_logits(
    expected: np.ndarray, actual: np.ndarray, onnx_path: Path, atol: float = DEFAULT_ATOL
) -> dict:
    """check_parity() on logits already computed (PyTorch `expected`, ONNX `actual`)."""
    if expected.shape != actual.shape:
        raise IntegrityError(
            f"ONNX logits shape {actual.shape} differs from PyTorch {expected.shape}: {onnx_path}"
        )
    max_abs_diff = float(np.max(np.abs(expected - actual))) if expected.size else 0.0
    if not max_abs_diff <= atol:  # also catches NaN
        raise IntegrityError(
            f"ONNX export differs from PyTorch: max |logit diff| {max_abs_diff:.3g} > atol {atol:g}"
        )
    return {
        "max_abs_diff": max_abs_diff,
        "atol": atol,
        "passes": True,
        "n_samples": int(expected.shape[0]),
    }


def quantize_int8(
    fp32_path: Path, int8_path: Path, per_channel: bool = False, pre_optimize: bool = True
) -> Path:
    """Dynamic int8 quantization: QInt8 weights for MatMul and for embedding Gathers.

    ORT's pre-processing (graph optimization) runs first; its symbolic shape inference is skipped
    because it cannot resolve the BERT mask arithmetic. If pre-processing fails we quantize the
    raw graph, which gives the same weights and only a few more nodes.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    pre_path = int8_path.with_name(int8_path.stem + ".pre.onnx")
    source = fp32_path
    if pre_optimize:  # off when the recipe asks onnxruntime for a lower graph level
        try:
            quant_pre_process(str(fp32_path), str(pre_path), skip_symbolic_shape=True)
            source = pre_path
        except Exception:  # pre-processing is an optimization, not a requirement
            source = fp32_path
    try:
        with _quiet_quantizer():
            quantize_dynamic(
                str(source),
                str(int8_path),
                # Gather: the word-embedding table is about half of a MiniLM's weights.
                op_types_to_quantize=["MatMul", "Gather"],
                per_channel=per_channel,
                weight_type=QuantType.QInt8,
            )
    finally:
        pre_path.unlink(missing_ok=True)
    return int8_path


class _Calibration:
    """onnxruntime CalibrationDataReader over a list of tokenized batches."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self._items = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def quantize_static_int8(
    fp32_path: Path, int8_path: Path, calib_batches: list[dict[str, np.ndarray]]
) -> Path:
    """Static (calibrated) int8: weights and activations of MatMul quantized in QDQ format,
    activation ranges taken (MinMax) from `calib_batches` of real texts."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if not calib_batches:
        raise InputError("static quantization needs calibration batches")
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_quantizer():
        quantize_static(
            str(fp32_path),
            str(int8_path),
            _Calibration([_as_int64(b) for b in calib_batches]),  # type: ignore[arg-type]
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul"],
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
    return int8_path
