"""Pick the teacher's inference precision by measuring it on this CPU.

bf16 autocast is only worth it where the CPU has bf16 matrix units (AMX, AVX512-BF16); on
others PyTorch emulates it and it is several times slower than fp32. So we time both on a few
real texts and take bf16 only when it is clearly faster and its features agree with fp32.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

MIN_SPEEDUP = 1.2
MIN_COSINE = 0.999


def _encode(encoder, batch: dict, bf16: bool) -> tuple[torch.Tensor, float]:
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        encoder.module(**batch)  # warm-up
        start = time.perf_counter()
        feats = encoder.module(**batch).float()
    return feats, time.perf_counter() - start


def measure_precision(encoder, texts: Sequence[str]) -> dict:
    """Time fp32 and bf16 on `texts` (one batch) and choose; the dict goes into the card."""
    batch = encoder.tokenize(list(texts))
    fp32, t_fp32 = _encode(encoder, batch, bf16=False)
    bf16, t_bf16 = _encode(encoder, batch, bf16=True)
    cosine = torch.nn.functional.cosine_similarity(fp32, bf16, dim=-1).min().item()
    speedup = t_fp32 / t_bf16
    choice = "bf16" if speedup >= MIN_SPEEDUP and cosine >= MIN_COSINE else "fp32"
    return {
        "texts": len(texts),
        "fp32_s": round(t_fp32, 4),
        "bf16_s": round(t_bf16, 4),
        "bf16_speedup": round(speedup, 3),
        "min_cosine": round(cosine, 6),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "choice": choice,
        "rule": f"bf16 if speedup >= {MIN_SPEEDUP} and min cosine >= {MIN_COSINE}",
    }
