"""`make bench-serve` end to end, shrunk: a real server process, the load generator in another
process, RSS of the server with several students and heads; serve.json has every figure."""

from __future__ import annotations

import json

import pytest

from modelfab.serve import bench, loadgen

pytestmark = pytest.mark.slow

KEYS = (
    "rps", "p50_ms", "p99_ms", "errors", "rss_20_students_bytes", "rss_50_heads_bytes",
    "rss_one_backbone_bytes",
)  # fmt: skip


def test_bench_serve_writes_every_figure(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "QUIET", tmp_path / "absent")
    out = tmp_path / "serve.json"
    argv = [
        "--out", str(out), "--students", "2", "--heads", "3", "--rounds", "1",
        "--duration-s", "1", "--requests", "300", "--warmup", "50", "--concurrency", "4",
        "--backbone", "synthetic", "--student-dim", "8",
    ]  # fmt: skip
    assert bench.main(argv) == 0
    result = json.loads(out.read_text())
    for key in KEYS:
        assert isinstance(result[key], int | float) and result[key] >= 0, key
    assert result["errors"] == 0
    assert result["rounds"][0]["requests"] <= 300  # bounded in requests
    assert result["rounds"][0]["codes"] == {"200": result["rounds"][0]["requests"]}
    assert result["rss_50_heads_bytes"] > 0 and result["setup"]["n_heads"] == 3
    assert set(result["acceptance"]) >= {"rps_at_least_1000", "no_errors"}


def test_load_generator_refuses_non_loopback_targets():
    import asyncio

    with pytest.raises(SystemExit, match="loopback"):
        asyncio.run(
            loadgen.run_load(
                "http://192.0.2.1:80/x", b"{}", concurrency=1, requests=1, duration_s=1
            )
        )
