"""Shared fixtures: a tiny random BERT teacher directory, a tiny 3-class text set, and a fresh
registry URL on each database backend (SQLite file, PostgreSQL schema)."""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_URL_ENV = "MODELFAB_TEST_PG_URL"

CLASS_WORDS = {
    "games": ["fun", "puzzle", "game", "levels", "arcade", "player", "shooter", "racing"],
    "science": ["molecular", "biology", "analysis", "toolkit", "chemistry", "physics", "data"],
    "editors": ["text", "editor", "syntax", "highlighting", "vim", "emacs", "keyboard", "macros"],
}
COMMON_WORDS = ["a", "the", "with", "and", "for", "of", "simple", "small", "new", "open"]
EXTRA_WORDS = [
    "fast",
    "tool",
    "library",
    "program",
    "free",
    "source",
    "linux",
    "desktop",
    "terminal",
    "support",
    "many",
    "modern",
    "classic",
    "graphical",
    "version",
    "mode",
    "files",
    "plugins",
    "based",
    "written",
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TEXTS_PER_CLASS = 20


def tiny_vocab() -> list[str]:
    words = [w for ws in CLASS_WORDS.values() for w in ws] + COMMON_WORDS + EXTRA_WORDS
    return SPECIALS + list(dict.fromkeys(words)) + [",", "."]


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("MODELFAB_QUIET", "1")


@pytest.fixture(scope="module")
def one_thread():
    """Run torch on one thread for a test module: tiny models are faster so, and steadier on
    a busy machine. Restores the previous setting afterwards. Module-scoped so module-scoped
    fixtures that train can request it too."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory) -> Path:
    """A tiny random BERT in HF layout with sentence-transformers metadata (mean + Normalize),
    mirroring all-MiniLM-L6-v2's directory; hidden size 32, 4 layers."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    out = tmp_path_factory.mktemp("teacher") / "tiny-bert"
    vocab_list = tiny_vocab()
    vocab = {token: i for i, token in enumerate(vocab_list)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(out)

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(vocab_list),
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    transformers.BertModel(config).save_pretrained(out, safe_serialization=True)

    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
        {
            "idx": 2,
            "name": "2",
            "path": "2_Normalize",
            "type": "sentence_transformers.models.Normalize",
        },
    ]
    (out / "modules.json").write_text(json.dumps(modules, indent=2))
    (out / "1_Pooling").mkdir()
    pooling = {
        "word_embedding_dimension": 32,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (out / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    return out


@pytest.fixture(scope="session")
def tiny_text_set() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(texts, labels) as tuples, for module- or session-scoped fixtures; see `tiny_texts`."""
    rng = random.Random(0)
    texts: list[str] = []
    labels: list[str] = []
    for label, words in CLASS_WORDS.items():
        seen: set[str] = set()
        while len(seen) < TEXTS_PER_CLASS:
            picked = rng.sample(words, rng.randint(2, 4))
            filler = rng.sample(COMMON_WORDS, rng.randint(0, 2))
            tokens = picked + filler
            rng.shuffle(tokens)
            text = " ".join(tokens)
            if text not in seen:
                seen.add(text)
                texts.append(text)
                labels.append(label)
    return tuple(texts), tuple(labels)


@pytest.fixture
def tiny_texts(tiny_text_set) -> tuple[list[str], list[str]]:
    """(texts, labels): 20 short texts for each of "games", "science", "editors", made of
    class words plus common filler; deterministic, and learnable by a small classifier."""
    texts, labels = tiny_text_set
    return list(texts), list(labels)


def pg_test_url() -> str:
    """The PostgreSQL server for tests (MODELFAB_TEST_PG_URL, which `bash .ci/postgres.sh`
    prints). Unset: the test is skipped, except in CI (CI=true), where it fails."""
    url = os.environ.get(PG_URL_ENV)
    if not url:
        reason = f"{PG_URL_ENV} is unset (export {PG_URL_ENV}=$(bash .ci/postgres.sh))"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI must test PostgreSQL: {reason}")
        pytest.skip(reason)
    return url


def fresh_pg_schema(base_url: str) -> Iterator[str]:
    """A URL whose connections use a new, empty schema (dropped when the generator ends)."""
    from sqlalchemy import create_engine, make_url

    url = make_url(base_url).set(drivername="postgresql+psycopg")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        scoped = url.update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def registry_url(request, tmp_path) -> Iterator[str]:
    """A URL of a new, empty registry database, once per backend: a SQLite file in tmp_path and
    a fresh schema on the PostgreSQL test server (see `pg_test_url`)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.sqlite'}"
    else:
        yield from fresh_pg_schema(pg_test_url())


@pytest.fixture
def pg_registry_url() -> Iterator[str]:
    """A fresh schema on the PostgreSQL test server, for what only PostgreSQL does."""
    yield from fresh_pg_schema(pg_test_url())
