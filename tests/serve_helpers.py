"""Shared set-up for the serve tests: a folder of tiny synthetic bundles and v2 request bodies."""

from __future__ import annotations

from pathlib import Path

from modelfab.serve import synthetic

WORDS = [
    "fun",
    "game",
    "puzzle",
    "arcade",
    "text",
    "editor",
    "vim",
    "syntax",
    "biology",
    "data",
    "physics",
    "toolkit",
]
STUDENT_LABELS = ["games", "editors", "science"]
DIM = 16
TOKEN = "serve-test-token-0123456789"


def make_bundles(root: Path) -> Path:
    """root/bundles with students alpha, beta, heads h1 (logistic) and h2 (mlp) over one
    backbone in root/bundles/backbones/."""
    tok = synthetic.word_tokenizer_json(WORDS, root / "tokenizer.json")
    bundles = root / "bundles"
    bundles.mkdir(parents=True)
    synthetic.student_bundle(bundles / "alpha", tok, STUDENT_LABELS, seed=1)
    synthetic.student_bundle(bundles / "beta", tok, ["a", "b"], seed=2)
    backbone = synthetic.backbone_bundle(bundles / "backbones", tok, dim=DIM, seed=3)
    synthetic.head_bundle(bundles / "h1", backbone, ["x", "y"], DIM, seed=4)
    synthetic.head_bundle(bundles / "h2", backbone, ["p", "q", "r"], DIM, seed=5, kind="mlp")
    return bundles


def v2_body(texts: list, shape: list[int] | None = None, datatype: str = "BYTES") -> dict:
    shape = [len(texts)] if shape is None else shape
    return {"inputs": [{"name": "text", "shape": shape, "datatype": datatype, "data": texts}]}
