"""A classifier's ONNX graphs from a cached encoder graph plus a freshly exported head.

In a factory run every scenario whose head sits on the frozen teacher exports the same 22M
parameter encoder as its ONNX int8 baseline; only the head (a linear layer or a small MLP)
differs. Exporting and quantizing the encoder cost ~16 CPU s a scenario, the head milliseconds.
So the encoder's fp32 and dynamic-int8 graphs are kept in a cache keyed by its weights and
everything else that shapes the graph (`encoder_key`), and each bundle's model is the cached
encoder graph joined to its head (`onnx.compose.merge_models`). The caller still checks the
joined graphs against PyTorch, as for any export.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from modelfab.export import onnx_export
from modelfab.torchutil import eval_mode

EMBEDDING = "embedding"
HEAD_PREFIX = "head/"


def encoder_key(encoder: nn.Module, max_length: int, opset: int) -> str:
    """sha256 of what decides the encoder's exported graphs: its class, its plain settings
    (pooling, normalisation), every tensor of its state, the export settings and the versions of
    the exporter and quantizer."""
    import onnxruntime

    from modelfab import __version__

    h = hashlib.sha256()
    settings = {
        k: v for k, v in vars(encoder).items() if isinstance(v, str | int | float | bool | None)
    }
    head = [type(encoder).__qualname__, sorted(settings.items()), max_length, opset]
    head += [torch.__version__, onnxruntime.__version__, __version__]
    h.update(repr(head).encode())
    for name, tensor in encoder.state_dict().items():
        t = tensor.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _publish(made: Path, final: Path) -> None:
    """Copy `made` next to `final` under a temporary name, then rename it into place: readers
    and a killed run never see a partial graph (a leftover `.name.*.tmp` is an orphan)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    try:
        shutil.copyfile(made, tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep other users of a shared home out
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cached_encoder_graphs(
    encoder: nn.Module, cache_dir: Path, max_length: int, opset: int
) -> tuple[Path, Path]:
    """(fp32, dynamic-int8) ONNX of `encoder` (input_ids, attention_mask -> embedding), exported
    on the first call for its key and read from `cache_dir` afterwards."""
    key = encoder_key(encoder, max_length, opset)
    fp32 = Path(cache_dir) / f"{key}.fp32.onnx"
    int8 = Path(cache_dir) / f"{key}.int8.onnx"
    if fp32.is_file() and int8.is_file():
        return fp32, int8
    with tempfile.TemporaryDirectory(prefix="modelfab-encoder-") as tmp:
        made = onnx_export.export_onnx(
            encoder, Path(tmp) / "encoder.fp32.onnx", max_length, opset, output_name=EMBEDDING
        )
        quantized = onnx_export.quantize_int8(made, Path(tmp) / "encoder.int8.onnx")
        _publish(made, fp32)
        _publish(quantized, int8)
    return fp32, int8


def _head_onnx(head: nn.Module, dim: int, path: Path, opset: int) -> Path:
    with eval_mode(head), torch.inference_mode(False), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            head,
            (torch.zeros((2, dim), dtype=torch.float32),),
            str(path),
            input_names=[EMBEDDING],
            output_names=[onnx_export.OUTPUT_NAME],
            opset_version=opset,
            dynamo=False,
            dynamic_axes={EMBEDDING: {0: "batch"}, onnx_export.OUTPUT_NAME: {0: "batch"}},
        )
    return path


def join(encoder_path: Path, head: nn.Module, dim: int, out: Path, opset: int) -> Path:
    """Write encoder graph + `head` as one classifier graph at `out`: inputs input_ids and
    attention_mask, output logits, as `onnx_export.export_onnx` gives for the whole module."""
    import onnx
    from onnx import compose

    body = onnx.load(str(encoder_path))
    with tempfile.TemporaryDirectory(prefix="modelfab-head-") as tmp:
        top = onnx.load(str(_head_onnx(head, dim, Path(tmp) / "head.onnx", opset)))
    top.ir_version = body.ir_version
    domains = {o.domain: o.version for o in top.opset_import}
    for o in body.opset_import:  # the quantizer adds com.microsoft; the head needs it declared
        domains.setdefault(o.domain, o.version)
    del top.opset_import[:]
    top.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in domains.items())
    joined = compose.merge_models(
        body,
        top,
        io_map=[(EMBEDDING, EMBEDDING)],  # merge_models prefixes the head side itself
        prefix2=HEAD_PREFIX,  # the head's tensor names may not collide with the encoder's
    )
    prefixed = HEAD_PREFIX + onnx_export.OUTPUT_NAME
    for node in joined.graph.node:
        node.output[:] = [onnx_export.OUTPUT_NAME if o == prefixed else o for o in node.output]
    for output in joined.graph.output:
        if output.name == prefixed:
            output.name = onnx_export.OUTPUT_NAME
    onnx.checker.check_model(joined)
    onnx.save(joined, str(out))
    return out
