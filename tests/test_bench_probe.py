"""Benchmarks in a fresh child process: a tiny exported bundle, the tiny teacher, the CLI."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modelfab.bench import probe
from modelfab.bench.probe import load_head, measure_bundle, measure_teacher, teacher_artifact
from modelfab.cli import main
from modelfab.errors import InputError, IntegrityError, ModelfabError, NotFoundError
from modelfab.export.manifest import MANIFEST, sha256_file, write_manifest

LABELS = ["games", "science", "editors"]
FAST = {"max_seconds": 0.3, "b1_calls": 12}


@pytest.fixture(scope="module")
def teacher_parts(tiny_teacher_dir, tmp_path_factory, one_thread):
    """The tiny teacher as the build leaves it: a SequenceClassifier, its head.safetensors and a
    teacher artifact directory (head + adapter.json + manifest)."""
    from modelfab.distill.transformer import SequenceClassifier
    from modelfab.teachers.hf_encoder import EncoderConfig, HFTextEncoder

    torch.manual_seed(0)
    teacher = HFTextEncoder(EncoderConfig(path=str(tiny_teacher_dir), max_length=32))
    head = torch.nn.Linear(teacher.dim, len(LABELS))
    artifact = tmp_path_factory.mktemp("teacher-artifact") / "teacher"
    artifact.mkdir()
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, artifact / probe.HEAD)
    adapter = {"classes": LABELS, "lineage": {"teacher": {"path": str(tiny_teacher_dir)}}}
    (artifact / probe.ADAPTER).write_text(json.dumps(adapter))
    write_manifest(artifact)
    return teacher, SequenceClassifier(teacher.module, head).eval(), artifact


@pytest.fixture(scope="module")
def bundle(teacher_parts, tmp_path_factory, tiny_text_set) -> Path:
    from modelfab.export.bundle import export_bundle

    teacher, model, _ = teacher_parts
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    calib = list(tiny_text_set[0][:8])
    export_bundle(model, teacher.tokenizer, LABELS, out, {"name": "tiny"}, 32, calib)
    return out


def test_measure_bundle_in_a_child_without_torch(bundle, tiny_texts):
    texts = tiny_texts[0]
    result = measure_bundle(bundle, texts, threads=(1, 2), rounds=2, **FAST)
    assert result["kind"] == "bundle" and Path(result["path"]) == bundle.resolve()
    assert set(result["at_threads"]) == {"1", "2"}
    for n in ("1", "2"):
        entry = result["at_threads"][n]
        assert entry["threads"] == int(n) and entry["backend"] == "onnxruntime"
        assert 0 < entry["latency_b1_p50_ms"] <= entry["latency_b1_p99_ms"]
        assert entry["throughput_b32"] > 0 and entry["rounds"] == 2
        assert len(entry["latency_b1_p99_ms_rounds"]) == 2
    assert 0 < result["load_s"] < 30 and result["import_s"] > 0
    assert result["size_bytes"] == sum(p.stat().st_size for p in bundle.iterdir())
    assert result["artifact_sha"] == sha256_file(bundle / MANIFEST)
    assert result["n_texts"] == len(texts) and result["flops_per_text"] is None
    # The child served with onnxruntime + tokenizers only, and its memory is its own: far below
    # this test process, which holds torch and the exported model.
    assert result["torch_imported"] is False and result["transformers_imported"] is False
    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert 10e6 < result["peak_rss_bytes"] < own_peak


def test_measure_bundle_refuses_bad_input_before_spawning(bundle, tmp_path):
    with pytest.raises(NotFoundError, match="missing"):
        measure_bundle(tmp_path / "missing", ["x"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(IntegrityError, match="manifest"):
        measure_bundle(tmp_path / "empty", ["x"])
    with pytest.raises(InputError, match="threads"):
        measure_bundle(bundle, ["x"], threads=(0,))
    with pytest.raises(InputError, match="texts"):
        measure_bundle(bundle, [])


def test_child_errors_come_back_as_modelfab_errors(tmp_path):
    spec = {"texts": ["x"], "threads": [1], "options": {"max_seconds": 0.1}}
    # A modelfab error in the child: same class and message in the parent.
    with pytest.raises(NotFoundError, match="nowhere"):
        probe._spawn({**spec, "kind": "bundle", "path": str(tmp_path / "nowhere")}, 60)
    with pytest.raises(InputError, match="unknown probe kind"):
        probe._spawn({**spec, "kind": "gpu", "path": "x"}, 60)
    # A crash: one line with the tail of the child's stderr.
    with pytest.raises(ModelfabError, match="KeyError") as info:
        probe._spawn({"kind": "bundle", "path": "x", "threads": [1], "options": {}}, 60)
    assert "\n" not in str(info.value) and "child process" in str(info.value)


def test_measure_teacher_in_a_child(tiny_teacher_dir, teacher_parts, tiny_texts):
    _, _, artifact = teacher_parts
    spec = teacher_artifact(artifact)
    assert spec["teacher_dir"] == str(tiny_teacher_dir) and spec["classes"] == LABELS
    assert spec["encoder_state"] is None
    result = measure_teacher(
        spec["teacher_dir"], spec["head"], tiny_texts[0], max_length=32, threads=(1,), **FAST
    )
    assert result["kind"] == "teacher" and set(result["at_threads"]) == {"1"}
    entry = result["at_threads"]["1"]
    assert entry["backend"] == "torch-fp32" and entry["latency_b1_p50_ms"] > 0
    assert entry["throughput_b32"] > 0
    assert result["load_s"] > 0 and result["peak_rss_bytes"] > 10e6
    assert result["torch_imported"] is True and result["flops_per_text"] > 0
    weights = sum(p.stat().st_size for p in tiny_teacher_dir.glob("*.safetensors"))
    assert result["size_bytes"] == weights + (artifact / probe.HEAD).stat().st_size
    with pytest.raises(NotFoundError, match="head"):
        measure_teacher(tiny_teacher_dir, artifact / "nope.safetensors", ["x"])


def test_load_head_linear_and_mlp(tmp_path):
    torch.manual_seed(0)
    linear = torch.nn.Linear(8, 3)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Dropout(0.1), torch.nn.Linear(16, 3)
    ).eval()
    x = torch.randn(4, 8)
    for name, module in (("linear", linear), ("mlp", mlp)):
        save_file(dict(module.state_dict()), tmp_path / f"{name}.safetensors")
        loaded = load_head(tmp_path / f"{name}.safetensors")
        torch.testing.assert_close(loaded(x), module(x))
    save_file({"w": torch.zeros(2)}, tmp_path / "odd.safetensors")
    with pytest.raises(InputError, match="unknown layout"):
        load_head(tmp_path / "odd.safetensors")


# ---- CLI: `modelfab bench BUNDLE` stores a registered model's result --------------------------


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELFAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MODELFAB_REGISTRY_URL", raising=False)
    return tmp_path / "home"


def _register(bundle: Path) -> str:
    from modelfab.registry import Registry

    with Registry() as registry:
        registry.upsert_dataset("d" * 64, "tiny", "test", 3, ["text"], "/dev/null")
        registry.upsert_scenario("s" * 64, "tiny-scenario", "d" * 64, {})
        run_id = registry.start_run("s" * 64, "build")
        return registry.add_model(
            run_id=run_id,
            scenario_id="s" * 64,
            name="tiny/student",
            role="student",
            family="test",
            artifact_path=str(bundle),
        )


def test_cli_bench_stores_registered_model_and_history_shows_it(home, bundle, capsys):
    args = ["--threads", "1", "--seconds", "0.3", "--rounds", "1"]
    # Outside any registry: measured, not stored, and no registry gets created.
    assert main(["bench", str(bundle), *args, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["recorded"] == [] and payload["model_id"] is None
    assert set(payload["bench"]["at_threads"]) == {"1"}
    assert not (home / "registry.sqlite").exists()

    model_id = _register(bundle)
    assert main(["bench", str(bundle), *args]) == 0  # the bundle path matches the model
    printed = capsys.readouterr().out
    assert (
        "tiny/student" in printed and "p50 ms" in printed and "stored as bench results" in printed
    )
    assert main(["bench", "run", model_id[:10], *args, "--json"]) == 0  # by model id prefix
    payload = json.loads(capsys.readouterr().out)
    assert payload["model_id"] == model_id and len(payload["recorded"]) == 1

    assert main(["bench", "history", "--model", model_id[:8]]) == 0
    listing = capsys.readouterr().out
    assert listing.count("tiny/student") == 2 and "tiny-scenario" in listing
    assert main(["bench", "history", "--json", "--scenario", "tiny-scenario"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model_id"] for r in rows] == [model_id, model_id]
    assert rows[0]["threads"] == 1 and rows[0]["peak_rss_bytes"] > 0 and rows[0]["load_s"] > 0
    assert main(["bench", "history", "--hardware", "ffffffffffff"]) == 0
    assert "no benchmark results match" in capsys.readouterr().out


def test_cli_bench_bad_target_is_one_line(home, tmp_path, capsys):
    assert main(["bench", str(tmp_path / "no-such-bundle")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-bundle" in err[0]
    assert main(["bench", "0123456789ab"]) == 3
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["bench", str(tmp_path), "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err
