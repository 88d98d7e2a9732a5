"""The shared-backbone form from a real (tiny) teacher: export_backbone + export_head, served."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from serve_helpers import v2_body

from modelfab.adapt.base import AdaptData
from modelfab.adapt.heads import LogisticHead, MLPHead
from modelfab.errors import InputError, IntegrityError
from modelfab.export.heads import HEAD_WEIGHTS, backbone_sha256, load_head
from modelfab.export.runtime import softmax
from modelfab.export.shared import export_backbone, export_head
from modelfab.serve.app import create_app
from modelfab.serve.config import ServeConfig

LABELS = ["games", "science", "editors"]


@pytest.fixture(scope="module")
def encoder(tiny_teacher_dir, one_thread):
    from modelfab.teachers.hf_encoder import EncoderConfig, HFTextEncoder

    return HFTextEncoder(EncoderConfig(path=str(tiny_teacher_dir), max_length=32))


@pytest.fixture(scope="module")
def data(encoder, tiny_text_set):
    texts, labels = (list(x) for x in tiny_text_set)
    x = encoder.encode(texts)
    y = np.array([LABELS.index(label) for label in labels])
    return AdaptData(texts, x, y, texts, x, y, len(LABELS))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, encoder, data):
    root = tmp_path_factory.mktemp("shared") / "bundles"
    backbone = export_backbone(encoder, root / "backbones", data.train_texts[:8], quantize=False)
    heads = {
        "logreg": LogisticHead(cs=(1.0,)).fit(data),
        "mlp": MLPHead(hidden=8, epochs=3, patience=3).fit(data),
    }
    for name, head in heads.items():
        export_head(head, LABELS, backbone, root / name, card={"scenario": "tiny"})
    return root, backbone, heads


def test_backbone_bundle_is_named_by_its_graph_and_verified(exported):
    _, backbone, _ = exported
    assert backbone_sha256(backbone) == backbone.name
    for name in ("logreg", "mlp"):
        assert load_head(exported[0] / name).backbone_sha256 == backbone.name


def test_served_heads_match_the_adapted_teacher(exported, encoder, data):
    root, _, heads = exported
    texts = data.val_texts[:10]
    with TestClient(create_app(ServeConfig(bundles_dir=root, refresh_s=0))) as client:
        assert len(client.app.state.host.groups) == 1  # both heads over one backbone
        for name, head in heads.items():
            response = client.post(f"/v2/models/{name}/infer", json=v2_body(texts))
            assert response.status_code == 200, response.text
            out = {o["name"]: o for o in response.json()["outputs"]}["probabilities"]
            served = np.array(out["data"], dtype=np.float32).reshape(out["shape"])
            expected = softmax(head.logits(encoder.encode(texts)).astype(np.float32))
            np.testing.assert_allclose(served, expected, atol=1e-4)


def test_tampered_head_is_refused(exported, tmp_path):
    import shutil

    root, _, _ = exported
    copy = tmp_path / "logreg"
    shutil.copytree(root / "logreg", copy)
    data = bytearray((copy / HEAD_WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (copy / HEAD_WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        load_head(copy)


def test_int8_backbone_exports(encoder, data, tmp_path):
    backbone = export_backbone(encoder, tmp_path, data.train_texts[:8], min_cosine=0.5)
    assert backbone_sha256(backbone) == backbone.name


def test_registered_teachers_become_head_models_over_one_backbone(
    tmp_path, monkeypatch, encoder, data, tiny_teacher_dir
):
    """Two scenarios' adapted teachers, saved as the build saves them, registered as head
    models; the registry catalog serves both over one exported backbone."""
    from modelfab import paths
    from modelfab.cli import main
    from modelfab.pipeline.build import save_teacher
    from modelfab.pipeline.workspace import Workspace
    from modelfab.registry import Registry
    from modelfab.serve.catalog import RegistryCatalog

    monkeypatch.setenv("MODELFAB_HOME", str(tmp_path / "home"))
    registry = Registry()
    registry.upsert_dataset("d" * 64, "tiny", "x", 60, ["text"], "/x")
    heads = {"one": LogisticHead(cs=(1.0,)).fit(data), "two": MLPHead(hidden=8, epochs=3).fit(data)}
    teacher_ids = []
    for i, (scenario, head) in enumerate(heads.items()):
        sc = registry.upsert_scenario(str(i) * 64, scenario, "d" * 64, {}, None)
        run = registry.start_run(sc.id, "build", {})
        workspace = Workspace(paths.artifacts(), run)
        lineage = {"teacher": {"id": encoder.id, "path": str(tiny_teacher_dir)}, "run_id": run}
        staged = save_teacher(workspace, f"t{i}", head, encoder.module, encoder, LABELS, lineage)
        final = workspace.publish({f"t{i}": staged})[f"t{i}"]
        teacher_ids.append(
            registry.add_model(
                run_id=run,
                scenario_id=sc.id,
                name=f"{scenario}/teacher",
                role="teacher",
                family="hf-encoder+" + head.name,
                artifact_path=str(final),
            )  # fmt: skip
        )
    assert main(["export-head", *teacher_ids]) == 0
    assert len(list((paths.artifacts() / "backbones").iterdir())) == 1  # exported once
    catalog = RegistryCatalog()
    assert sorted(catalog.scan()) == ["one.teacher-logreg-head", "two.teacher-mlp-head"]
    texts = data.val_texts[:6]
    with TestClient(create_app(ServeConfig(refresh_s=0), catalog)) as client:
        assert len(client.app.state.host.groups) == 1
        for scenario, head in heads.items():
            name = f"{scenario}.teacher-{head.name}-head"
            response = client.post(f"/v2/models/{name}/infer", json=v2_body(texts))
            assert response.status_code == 200, response.text
            out = {o["name"]: o for o in response.json()["outputs"]}["probabilities"]
            served = np.array(out["data"], dtype=np.float32).reshape(out["shape"])
            expected = softmax(head.logits(encoder.encode(texts)).astype(np.float32))
            # int8 backbone: probabilities close, not equal
            assert np.abs(served - expected).max() < 0.1
    assert main(["export-head", "nonexistent"]) == 3


def test_a_tuned_body_cannot_share_the_backbone(tmp_path):
    from modelfab.export.manifest import write_manifest
    from modelfab.export.shared import _teacher_head

    (tmp_path / "head.safetensors").write_bytes(b"x")
    (tmp_path / "adapter.json").write_text('{"strategy": "contrastive"}')
    (tmp_path / "encoder.safetensors").write_bytes(b"x")
    write_manifest(tmp_path)
    with pytest.raises(InputError, match="tuned body"):
        _teacher_head(tmp_path)
