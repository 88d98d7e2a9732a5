"""Measure one model in a fresh child process: load time, peak memory, size and timings.

Load time and peak RSS only mean something in a process that holds nothing but the measured
model: the CLI (or a build) has already imported torch and trained things, and its peak RSS
would swamp a 20 MB bundle. So `measure_bundle` and `measure_teacher` write their inputs to a
temporary JSON file, run `python -m modelfab.bench.probe SPEC` with this interpreter, and read
back the one JSON line the child prints. Timing itself is `modelfab.bench.latency`'s.

The bundle child imports only the serving path (onnxruntime + tokenizers + numpy); it reports
whether torch was imported, and a test holds it to "no".

Both return the same shape:

    {"kind": "bundle" | "teacher", "path": str, "artifact_sha": str,
     "load_s": float,          # start of model construction -> first prediction done
     "import_s": float,        # importing the runtime (onnxruntime, or torch + transformers)
     "peak_rss_bytes": int,    # the child's own peak RSS after all timings (VmHWM)
     "size_bytes": int,        # bundle files, or teacher weights + head (+ fine-tuned encoder)
     "flops_per_text": float | None,  # teacher: counted in the child; bundle: card.json's
                                      # "flops_per_text" if the export wrote one
     "n_texts": int, "threads": [int, ...], "wall_s": float,
     "torch_imported": bool, "transformers_imported": bool,
     "at_threads": {"1": {<bench_bundle / bench_torch result>}, "2": {...}}}

plus "head" (the head file) for a teacher.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelfab.errors import (
    EnvironmentProblem,
    InputError,
    IntegrityError,
    ModelfabError,
    NotFoundError,
)

# Exit codes the child reports, back to the error classes the parent raises.
_ERRORS: dict[int, type[ModelfabError]] = {
    cls.exit_code: cls for cls in (InputError, NotFoundError, IntegrityError, EnvironmentProblem)
}
HEAD = "head.safetensors"
ENCODER = "encoder.safetensors"
ADAPTER = "adapter.json"


def _threads(threads: Sequence[int]) -> list[int]:
    values = list(dict.fromkeys(threads))
    if not values or not all(isinstance(n, int) and not isinstance(n, bool) for n in values):
        raise InputError(f"threads must be a non-empty list of integers, got {list(threads)!r}")
    if min(values) < 1:
        raise InputError(f"threads must be >= 1, got {values}")
    return values


def _texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
        raise InputError("benchmark texts must be a non-empty list of strings")
    return list(texts)


def _options(max_seconds: float, b1_calls: int, rounds: int) -> dict[str, Any]:
    if max_seconds <= 0 or b1_calls < 1 or rounds < 1:
        raise InputError("benchmark needs max_seconds > 0, b1_calls >= 1 and rounds >= 1")
    return {"max_seconds": float(max_seconds), "b1_calls": int(b1_calls), "rounds": int(rounds)}


def measure_bundle(
    path: Path,
    texts: Sequence[str],
    threads: Sequence[int] = (1, 2),
    max_seconds: float = 6.0,
    b1_calls: int = 200,
    rounds: int = 3,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Benchmark an exported bundle in a fresh process at each thread count in `threads`.

    `max_seconds` bounds each thread count's timings (see `bench_callable`); load and process
    start come on top. The manifest is checked here first, so a missing or altered bundle fails
    fast with NotFoundError / IntegrityError. Returns the dict described in the module docstring.
    """
    from modelfab.export.manifest import verify_bundle  # standard library only

    path = Path(path)
    verify_bundle(path)
    spec = {
        "kind": "bundle",
        "path": str(path.resolve()),
        "texts": _texts(texts),
        "threads": _threads(threads),
        "options": _options(max_seconds, b1_calls, rounds),
    }
    return _spawn(spec, timeout_s)


def measure_teacher(
    teacher_dir: str | Path | None,
    head: Path,
    texts: Sequence[str],
    max_length: int = 128,
    threads: Sequence[int] = (1, 2),
    max_seconds: float = 6.0,
    b1_calls: int = 200,
    rounds: int = 3,
    encoder_state: Path | None = None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Benchmark the PyTorch fp32 teacher classifier in a fresh process, like `measure_bundle`.

    The model is `SequenceClassifier(HFTextEncoder(teacher_dir).module, head)`, as the build
    benchmarks it: `teacher_dir` is a local HF model directory (None or "default": the packaged
    MiniLM), `head` a head.safetensors as the build saves it (see `load_head`), `encoder_state`
    an optional encoder.safetensors of a fine-tuned body. Texts are truncated to `max_length`.
    The child also counts the model's FLOPs per text on the batch-32 batch.
    """
    if teacher_dir is not None and str(teacher_dir) != "default":
        if not Path(teacher_dir).is_dir():
            raise NotFoundError(f"teacher directory not found: {teacher_dir}")
        teacher_dir = str(Path(teacher_dir).resolve())
    for what, file in (("head", head), ("encoder state", encoder_state)):
        if file is not None and not Path(file).is_file():
            raise NotFoundError(f"teacher {what} file not found: {file}")
    if max_length < 1:
        raise InputError(f"max_length must be >= 1, got {max_length}")
    spec = {
        "kind": "teacher",
        "path": teacher_dir,
        "head": str(Path(head).resolve()),
        "encoder_state": None if encoder_state is None else str(Path(encoder_state).resolve()),
        "max_length": int(max_length),
        "texts": _texts(texts),
        "threads": _threads(threads),
        "options": _options(max_seconds, b1_calls, rounds),
    }
    return _spawn(spec, timeout_s)


def teacher_artifact(path: Path) -> dict[str, Any]:
    """What `measure_teacher` needs, read from a registered teacher's artifact directory (the
    build writes head.safetensors, adapter.json and, for a fine-tuned body, encoder.safetensors):
    {"teacher_dir", "head", "encoder_state", "classes"}."""
    path = Path(path)
    if not (path / HEAD).is_file() or not (path / ADAPTER).is_file():
        raise NotFoundError(f"{path} is not a teacher artifact ({HEAD} and {ADAPTER} expected)")
    try:
        adapter = json.loads((path / ADAPTER).read_text(encoding="utf-8"))
        teacher_dir = adapter["lineage"]["teacher"]["path"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{path / ADAPTER} does not name its teacher ({exc!r})") from None
    return {
        "teacher_dir": teacher_dir,
        "head": path / HEAD,
        "encoder_state": path / ENCODER if (path / ENCODER).is_file() else None,
        "classes": list(adapter.get("classes") or []),
        "max_length": adapter.get("max_length"),  # what the build measured it with
    }


# ---- parent side: spawn, read back ------------------------------------------------------------


def _stderr_tail(stderr: str, lines: int = 3, chars: int = 600) -> str:
    """The last few non-empty lines of the child's stderr, on one line."""
    tail = " | ".join([line.strip() for line in stderr.splitlines() if line.strip()][-lines:])
    return tail[-chars:] or "(no output)"


def _last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict) and "ok" in value:
                return value
    return None


def _spawn(spec: dict[str, Any], timeout_s: float | None) -> dict[str, Any]:
    """Run the probe child on `spec`; its result, or its error re-raised here."""
    what = f"{spec['kind']} {spec['path'] or 'default'}"
    if timeout_s is None:
        timeout_s = 120 + 3 * spec["options"]["max_seconds"] * len(spec["threads"])
    src = str(Path(__file__).resolve().parents[2])  # so the child finds modelfab uninstalled
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [src, os.getenv("PYTHONPATH")])),
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="modelfab-probe-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "modelfab.bench.probe", str(spec_path)],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ModelfabError(
                f"benchmark of {what} did not finish within {timeout_s:.0f} s"
            ) from None
    answer = _last_json(proc.stdout)
    if answer is None or (proc.returncode != 0 and answer.get("ok")):
        raise ModelfabError(
            f"benchmark of {what} failed in its child process (exit {proc.returncode}): "
            + _stderr_tail(proc.stderr)
        )
    if not answer["ok"]:
        error = _ERRORS.get(int(answer.get("exit_code", 1)), ModelfabError)
        raise error(str(answer.get("error", "unknown error")))
    result = dict(answer["result"])
    result["wall_s"] = time.perf_counter() - start
    return result


# ---- child side: load, time, report ----------------------------------------------------------


def _peak_rss_bytes() -> int:
    """This process's peak resident set size, in bytes.

    Linux: VmHWM from /proc/self/status, the high-water mark of this process's own address
    space. Not getrusage's ru_maxrss: exec keeps the larger of the old and new address spaces'
    peaks, and the old one is the parent's (fork copies it, vfork shares it), so a child
    spawned by a 600 MB test process would report 600 MB whatever it loads.
    """
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    import resource  # elsewhere: the best there is (bytes on macOS, KiB on other systems)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _card_flops(path: Path) -> float | None:
    """FLOPs per text recorded by the export in card.json, if any: the bundle's ONNX graph
    cannot be run under torch's FLOP counter, so its count has to come from export time."""
    try:
        value = json.loads((path / "card.json").read_text(encoding="utf-8")).get("flops_per_text")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _probe_bundle(spec: dict[str, Any]) -> dict[str, Any]:
    from modelfab.bench.latency import bench_bundle
    from modelfab.export.manifest import MANIFEST, dir_bytes, sha256_file

    path, texts, threads = Path(spec["path"]), spec["texts"], spec["threads"]
    clock = time.perf_counter
    start = clock()
    from modelfab.export.runtime import BundlePredictor

    import_s = clock() - start
    start = clock()
    predictor = BundlePredictor(path, threads=threads[0])
    predictor.predict_proba(texts[:1])
    load_s = clock() - start
    del predictor  # one model in memory at a time: the peak is one model's
    at_threads = {str(n): bench_bundle(path, texts, threads=n, **spec["options"]) for n in threads}
    return {
        "artifact_sha": sha256_file(path / MANIFEST),  # the manifest hashes every file
        "load_s": load_s,
        "import_s": import_s,
        "peak_rss_bytes": _peak_rss_bytes(),
        "size_bytes": dir_bytes(path),
        "flops_per_text": _card_flops(path),
        "at_threads": at_threads,
    }


def load_head(path: Path) -> Any:
    """The classification head saved by the build as head.safetensors: a linear layer (logreg:
    "weight", "bias") or the MLP of `modelfab.adapt.heads.MLPHead` ("0.*" and "3.*": Linear,
    GELU, Dropout, Linear)."""
    from safetensors.torch import load_file
    from torch import nn

    state = load_file(str(path))
    keys = set(state)
    head: nn.Module
    if keys == {"weight", "bias"}:
        out_dim, in_dim = state["weight"].shape
        head = nn.Linear(in_dim, out_dim)
    elif keys == {"0.weight", "0.bias", "3.weight", "3.bias"}:
        hidden, in_dim = state["0.weight"].shape
        head = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.GELU(),
            nn.Dropout(0.1),
            nn.Linear(hidden, state["3.weight"].shape[0]),
        )
    else:
        raise InputError(f"head {path} has an unknown layout (tensors: {sorted(keys)})")
    head.load_state_dict(state)
    return head.eval()


def _probe_teacher(spec: dict[str, Any]) -> dict[str, Any]:
    from modelfab.bench.latency import _batch, bench_torch
    from modelfab.export.manifest import sha256_file

    texts, threads, max_length = spec["texts"], spec["threads"], spec["max_length"]
    clock = time.perf_counter
    start = clock()
    import torch
    from safetensors.torch import load_file

    from modelfab.bench.flops import flops_per_text
    from modelfab.distill.transformer import SequenceClassifier
    from modelfab.teachers.hf_encoder import EncoderConfig, HFTextEncoder

    import_s = clock() - start
    torch.set_num_threads(threads[0])
    start = clock()
    teacher = HFTextEncoder(EncoderConfig(path=spec["path"], max_length=max_length))
    if spec["encoder_state"]:
        teacher.module.load_state_dict(load_file(spec["encoder_state"]))
    model = SequenceClassifier(teacher.module, load_head(Path(spec["head"]))).eval()
    with torch.inference_mode():
        model(**teacher.tokenize(texts[:1]))
    load_s = clock() - start
    at_threads = {
        str(n): bench_torch(
            model, teacher.tokenizer, texts, max_length, threads=n, **spec["options"]
        )
        for n in threads
    }
    peak_rss = _peak_rss_bytes()  # before the FLOP count, which is not part of serving
    batch = teacher.tokenize(_batch(texts, at_threads[str(threads[0])]["batch_size"]))
    flops = flops_per_text(model, batch["input_ids"], batch["attention_mask"])
    extra_files = [Path(spec["head"])] + (
        [Path(spec["encoder_state"])] if spec["encoder_state"] else []
    )
    digest = hashlib.sha256(teacher.weights_id.encode())
    for file in extra_files:
        digest.update(sha256_file(file).encode())
    return {
        "path": str(teacher.model_dir),
        "head": spec["head"],
        "artifact_sha": digest.hexdigest(),
        "load_s": load_s,
        "import_s": import_s,
        "peak_rss_bytes": peak_rss,
        "size_bytes": teacher.size_bytes + sum(f.stat().st_size for f in extra_files),
        "flops_per_text": flops,
        "at_threads": at_threads,
    }


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    probe = {"bundle": _probe_bundle, "teacher": _probe_teacher}.get(str(spec.get("kind")))
    if probe is None:
        raise InputError(f"unknown probe kind {spec.get('kind')!r}")
    result = {"kind": spec["kind"], "path": spec["path"], **probe(spec)}
    result.update(
        {
            "n_texts": len(spec["texts"]),
            "threads": spec["threads"],
            "torch_imported": "torch" in sys.modules,
            "transformers_imported": "transformers" in sys.modules,
        }
    )
    return result


def main(argv: list[str] | None = None) -> int:
    """Child entry point: `python -m modelfab.bench.probe SPEC.json` prints one JSON line,
    {"ok": true, "result": {...}} or {"ok": false, "error": ..., "exit_code": ...}."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m modelfab.bench.probe SPEC.json", file=sys.stderr)
        return 2
    try:
        spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
        answer: dict[str, Any] = {"ok": True, "result": _run_child(spec)}
        code = 0
    except ModelfabError as exc:
        answer = {"ok": False, "error": str(exc), "exit_code": exc.exit_code}
        code = exc.exit_code
    print(json.dumps(answer, default=float), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
