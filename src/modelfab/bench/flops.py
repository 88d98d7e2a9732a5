"""FLOPs of a model's forward pass, and achieved FLOP/s as a fraction of the machine's peak.

The fraction says how well a model uses the CPU: a small student at 2% of the matmul peak has
room for a better kernel or a bigger batch; a teacher at 60% does not. Conventions:

* FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode`: matmuls, linear layers,
  convolutions and attention (2 FLOPs per multiply-add). Embedding look-ups are gathers and count
  0 FLOPs; element-wise work (GELU, LayerNorm, softmax, pooling) is not counted either, so the
  count is the model's matmul work. torch does not count its CPU attention kernel
  (`_scaled_dot_product_flash_attention_for_cpu`, what BERT's sdpa runs on CPU); it is counted
  here like the GPU ones: QK^T plus attention x V.
* The count is for the padded batch the throughput was measured on (texts padded to the longest
  one), divided by the batch size: the work the CPU actually did per text.
* An int8 (quantized ONNX) model is counted as its fp32 PyTorch twin and compared with the fp32
  peak: the fraction then reads as "fp32-equivalent work per second", which can exceed what the
  same kernels would reach in fp32.
"""

from __future__ import annotations

import math
from typing import Any

from modelfab.errors import InputError


def _cpu_attention_flops(
    query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any
) -> int:
    """QK^T and attention x V of a (B, H, S, D) attention, as torch counts its GPU kernels."""
    batch, heads, s_q, d_qk = query_shape
    s_k, d_v = key_shape[2], value_shape[3]
    return 2 * batch * heads * s_q * s_k * (d_qk + d_v)


def flops_per_text(module: Any, input_ids: Any, attention_mask: Any) -> float:
    """Forward FLOPs of `module(input_ids=..., attention_mask=...)` for the whole batch, divided
    by the batch size. Runs one forward pass without gradients (and without changing the
    module's train/eval mode)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    batch = int(input_ids.shape[0])
    if batch < 1:
        raise InputError("flops_per_text needs a batch of at least one text")
    cpu_attention = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    counter = FlopCounterMode(display=False, custom_mapping={cpu_attention: _cpu_attention_flops})
    with torch.no_grad(), counter:
        module(input_ids=input_ids, attention_mask=attention_mask)
    return float(counter.get_total_flops()) / batch


def flops_fraction(flops_per_text: float, texts_per_s: float, peak_flops: float) -> float:
    """Achieved FLOP/s (`flops_per_text` x `texts_per_s`) over `peak_flops` (FLOP/s)."""
    values = {"flops_per_text": flops_per_text, "texts_per_s": texts_per_s, "peak": peak_flops}
    for name, value in values.items():
        if not math.isfinite(value) or value < 0 or (name == "peak" and value == 0):
            raise InputError(f"flops_fraction needs a finite, positive {name}, got {value!r}")
    return flops_per_text * texts_per_s / peak_flops
