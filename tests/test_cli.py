"""The CLI: a full flow on tiny data, and one clear line + exit code for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pipeline_helpers import write_dataset

from modelfab.cli import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELFAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MODELFAB_REGISTRY_URL", raising=False)
    return tmp_path / "home"


def _build_args(teacher_dir, layers: int, extra: list[str]) -> list[str]:
    """`modelfab build tiny` on the tiny teacher, fast settings."""
    fast = ["--max-length", "32", "--precision", "fp32", "--adapt", "logreg"]
    fast += ["--families", "transformer", "--no-compress", "--student-max-length", "16"]
    return ["build", "tiny", "--teacher", str(teacher_dir), *fast, "--layers", str(layers), *extra]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


@pytest.fixture
def built(home, tmp_path, tiny_teacher_dir, capsys):
    data = write_dataset(tmp_path / "tiny.jsonl")
    assert main(["data", "import", str(data), "--name", "tiny"]) == 0
    args = [
        "scenario",
        "create",
        "tiny",
        "--dataset",
        "tiny",
        "--text",
        "text",
        "--label",
        "label",
        "--split",
        "group",
        "--group-field",
        "src",
        "--unlabeled-pool",
        "10",
    ]
    assert main(args) == 0
    assert "classes" in capsys.readouterr().out.lower()
    args = _build_args(tiny_teacher_dir, layers=1, extra=["--epochs", "1", "--no-bench"])
    assert main(args) == 0
    bundle = capsys.readouterr().out.strip().splitlines()[-1].removeprefix("bundle: ").strip()
    return bundle


def test_full_flow_and_predict(built, capsys):
    assert main(["predict", built, "a fun puzzle game", "vim syntax editor"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [x["text"] for x in lines] == ["a fun puzzle game", "vim syntax editor"]
    assert all(x["label"] in {"games", "science", "editors"} for x in lines)
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "tiny/transformer-l1-int8" in listing and "tiny/teacher" in listing
    assert main(["scenario", "show", "tiny"]) == 0
    assert '"label_field": "label"' in capsys.readouterr().out


def test_predict_path_never_imports_torch(built):
    code = (
        "import sys; from modelfab.cli import main; "
        f"rc = main(['predict', {built!r}, 'a fun game']); "
        "assert rc == 0, rc; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'transformers' not in sys.modules, 'transformers imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_tampered_bundle_is_refused(built, capsys):
    with open(f"{built}/labels.json", "a", encoding="utf-8") as handle:
        handle.write(" ")
    assert main(["predict", built, "x"]) == 4
    assert "labels.json" in _one_error_line(capsys)


@pytest.mark.parametrize(
    "content, expected",
    [(b"", "empty"), (b'{"text": "caf\xe9"}\n', "UTF-8"), (b'{"text": \n', "line 1")],
)
def test_bad_files_get_one_line_and_exit_2(home, tmp_path, capsys, content, expected):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    assert main(["data", "import", str(path)]) == 2
    assert expected.lower() in _one_error_line(capsys).lower()


def test_missing_field_and_single_example_class(home, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    rows = [{"text": f"t{i}", "label": "a" if i else "b"} for i in range(6)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", "import", str(data), "--name", "d"]) == 0
    capsys.readouterr()
    assert main(["scenario", "create", "s", "--dataset", "d", "--label", "nope"]) == 2
    assert "nope" in _one_error_line(capsys)
    args = [
        "scenario",
        "create",
        "s",
        "--dataset",
        "d",
        "--label",
        "label",
        "--min-class-count",
        "1",
    ]
    assert main(args) == 2
    assert "'b'" in _one_error_line(capsys)


def test_unknown_names_exit_3(home, capsys):
    assert main(["build", "no-such-scenario"]) == 3
    assert "no-such-scenario" in _one_error_line(capsys)
    assert main(["scenario", "show", "ghost"]) == 3
    _one_error_line(capsys)
    assert main(["predict", "0123456789ab", "x"]) == 3
    _one_error_line(capsys)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["predict", "some-bundle"], "Missing argument"),
        (["build", "x", "--layers", "abc"], "Invalid value"),
        (["no-such-command"], "No such command"),
    ],
)
def test_usage_errors_are_one_message_and_exit_2(home, capsys, argv, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--precision", "fp8", "precision"),
        ("--layers", "0", "layers=0"),
        ("--epochs", "0", "epochs=0"),
        ("--adapt", "magic", "magic"),
        ("--families", "transformer,lstm", "lstm"),
        ("--min-f1", "80", "min_f1"),
        ("--max-latency-ms", "-1", "max_latency_ms"),
    ],
)
def test_bad_build_options_fail_before_any_work(home, capsys, option, value, expected):
    assert main(["build", "any-scenario", option, value]) == 2
    assert expected in _one_error_line(capsys)


def test_latency_budget_needs_the_bench(home, capsys):
    assert main(["build", "any", "--max-latency-ms", "1", "--no-bench"]) == 2
    assert "latency budget" in _one_error_line(capsys)


def test_too_many_student_layers_for_the_teacher(built, tiny_teacher_dir, capsys):
    args = _build_args(tiny_teacher_dir, layers=9, extra=["--no-bench"])
    assert main(args) == 2
    assert "1..4" in _one_error_line(capsys)


def test_bench_refuses_a_folder_that_is_not_a_bundle(home, tmp_path, capsys):
    (tmp_path / "notabundle").mkdir()
    assert main(["bench", str(tmp_path / "notabundle")]) == 4
    assert "manifest" in _one_error_line(capsys)
    assert main(["bench", str(tmp_path / "missing-dir")]) == 3
    assert "missing-dir" in _one_error_line(capsys)


def test_scenario_without_validation_split_is_refused(home, tmp_path, capsys):
    data = write_dataset(tmp_path / "tiny.jsonl")
    assert main(["data", "import", str(data), "--name", "tiny"]) == 0
    capsys.readouterr()
    args = ["scenario", "create", "s", "--dataset", "tiny", "--label", "label", "--val-frac", "0"]
    assert main(args) == 2
    assert "val_frac" in _one_error_line(capsys)


def test_a_body_distilled_once_starts_a_builds_student(built, tmp_path, tiny_teacher_dir, capsys):
    """`modelfab body` distills a body over a corpus file (once: the second call finds it), and
    `modelfab build --student-body` starts the transformer student from it; a body of another
    depth is refused in one line."""
    corpus = write_dataset(tmp_path / "corpus.jsonl", per_class=6, seed=3)
    args = ["body", str(corpus), "--fields", "text", "--teacher", str(tiny_teacher_dir)]
    args += ["--layers", "1", "--max-length", "16", "--epochs", "1"]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "distilled in" in lines[0]
    body = lines[-1].removeprefix("path: ").strip()
    assert body.endswith(".safetensors")
    assert main(args) == 0
    again = capsys.readouterr().out.strip().splitlines()
    assert "reused" in again[0] and again[-1].removeprefix("path: ").strip() == body

    build = _build_args(tiny_teacher_dir, layers=1, extra=["--epochs", "1", "--no-bench"])
    assert main([*build, "--student-body", body]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("bundle: ")
    deeper = _build_args(tiny_teacher_dir, layers=2, extra=["--epochs", "1", "--no-bench"])
    assert main([*deeper, "--student-body", body]) == 2
    assert "has 1 layers; the student asks for 2" in _one_error_line(capsys)


def test_a_body_corpus_without_the_text_field_is_one_error_line(home, tmp_path, capsys):
    corpus = write_dataset(tmp_path / "corpus.jsonl", per_class=2)
    assert main(["body", str(corpus), "--fields", "body_text"]) == 2
    line = _one_error_line(capsys)
    assert "no text field ['body_text']" in line and "available: text, label, src" in line
