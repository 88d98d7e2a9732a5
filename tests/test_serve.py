"""modelfab serve: endpoints, errors, limits, shared backbones, admin, catalog, metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from serve_helpers import STUDENT_LABELS, TOKEN, make_bundles, v2_body

from modelfab.export.heads import load_head
from modelfab.export.runtime import BundlePredictor, encode, load_tokenizer, softmax
from modelfab.serve import synthetic
from modelfab.serve.app import create_app
from modelfab.serve.batcher import InferenceTimeout, MicroBatcher, QueueFull
from modelfab.serve.catalog import RegistryCatalog
from modelfab.serve.config import BatchConfig, ServeConfig
from modelfab.serve.metrics import Metrics

TEXTS = ["fun arcade game", "vim syntax editor", "biology data toolkit", "unknown words here"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    return make_bundles(tmp_path_factory.mktemp("serve"))


def _client(bundles, **overrides):
    overrides = {"refresh_s": 0.0, "admin_token": TOKEN, **overrides}
    config = ServeConfig(bundles_dir=bundles, **overrides)
    return TestClient(create_app(config))


@pytest.fixture(scope="module")
def client(bundles):
    with _client(bundles) as c:
        yield c


def _probabilities(response) -> np.ndarray:
    out = {o["name"]: o for o in response.json()["outputs"]}["probabilities"]
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


def test_v2_infer_matches_the_bundle_predictor(client, bundles):
    response = client.post("/v2/models/alpha/infer", json=v2_body(TEXTS))
    assert response.status_code == 200
    expected = BundlePredictor(bundles / "alpha").predict_proba(TEXTS)
    np.testing.assert_allclose(_probabilities(response), expected, atol=1e-6)
    labels = {o["name"]: o for o in response.json()["outputs"]}["label"]
    assert labels["data"] == [STUDENT_LABELS[i] for i in expected.argmax(1)]


def test_v2_accepts_nested_n_by_1_shape_and_selected_outputs(client):
    body = v2_body([[t] for t in TEXTS[:2]], shape=[2, 1])
    body["outputs"] = [{"name": "label"}]
    body["id"] = "req-7"
    response = client.post("/v2/models/alpha/infer", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["id"] == "req-7"
    assert [o["name"] for o in payload["outputs"]] == ["label"]


def test_json_body_without_content_type_is_accepted(client):
    # curl -d and some clients send no or a form Content-Type; the body is JSON all the same.
    body = json.dumps(v2_body(TEXTS[:1])).encode()
    response = client.post(
        "/v2/models/alpha/infer",
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200


def test_v1_classify_with_top_k(client, bundles):
    response = client.post("/v1/models/alpha:classify", json={"texts": TEXTS, "top_k": 2})
    assert response.status_code == 200
    preds = response.json()["predictions"]
    expected = BundlePredictor(bundles / "alpha").predict_proba(TEXTS)
    assert [p["label"] for p in preds] == [STUDENT_LABELS[i] for i in expected.argmax(1)]
    assert all(len(p["top"]) == 2 and p["top"][0]["label"] == p["label"] for p in preds)
    np.testing.assert_allclose([p["score"] for p in preds], expected.max(1), atol=1e-6)


def test_heads_share_one_backbone_and_match_numpy(client, bundles):
    host = client.app.state.host
    h1, h2 = host.models["h1"], host.models["h2"]
    assert h1.engine_key == h2.engine_key  # one engine, one batcher for both heads
    assert sum(k.startswith("backbone:") for k in host.groups) == 1
    backbone = bundles / "backbones" / h1.backbone
    preprocess = json.loads((backbone / "preprocess.json").read_text())
    inputs = encode(load_tokenizer(backbone / "tokenizer.json", preprocess), TEXTS)
    session = ort.InferenceSession(str(backbone / "model.onnx"))
    embedding = session.run(["embedding"], inputs)[0]
    for name in ("h1", "h2"):
        response = client.post(f"/v2/models/{name}/infer", json=v2_body(TEXTS))
        assert response.status_code == 200
        expected = softmax(load_head(bundles / name).logits(embedding))
        np.testing.assert_allclose(_probabilities(response), expected, atol=1e-5)


BAD_REQUESTS = [
    ("malformed json", "/v2/models/alpha/infer", b'{"inputs": [', 400, "malformed JSON"),
    ("wrong datatype", "/v2/models/alpha/infer", v2_body([1.5], datatype="FP32"), 400, "BYTES"),
    ("shape mismatch", "/v2/models/alpha/infer", v2_body(["a", "b"], shape=[3]), 400, "shape"),
    ("bad rank", "/v2/models/alpha/infer", v2_body(["a", "b"], shape=[1, 2]), 400, "shape"),
    ("non-string data", "/v2/models/alpha/infer", v2_body([1, 2]), 400, "strings"),
    ("empty v2 batch", "/v2/models/alpha/infer", v2_body([]), 400, "empty batch"),
    ("empty v1 batch", "/v1/models/alpha:classify", {"texts": []}, 400, "empty batch"),
    ("missing field", "/v2/models/alpha/infer", {"inputs": [{"name": "t"}]}, 422, "shape"),
    ("two inputs", "/v2/models/alpha/infer", {"inputs": v2_body(["a"])["inputs"] * 2}, 400, "one"),
    (
        "unknown output",
        "/v2/models/alpha/infer",
        {**v2_body(["a"]), "outputs": [{"name": "z"}]},
        400,
        "unknown output",
    ),  # fmt: skip
    ("unknown model", "/v2/models/nope/infer", v2_body(["a"]), 404, "not found"),
    ("unknown v1 model", "/v1/models/nope:classify", {"texts": ["a"]}, 404, "not found"),
    ("too many texts", "/v1/models/alpha:classify", {"texts": ["a"] * 300}, 413, "limit"),
    (
        "lone surrogate",
        "/v1/models/alpha:classify",
        b'{"texts": ["ok", "\\ud800"]}',
        400,
        "malformed JSON",
    ),  # fmt: skip
    ("wrong version", "/v2/models/alpha/versions/0/infer", v2_body(["a"]), 404, "version"),
]


@pytest.mark.parametrize(
    "path,body,status,fragment", [r[1:] for r in BAD_REQUESTS], ids=[r[0] for r in BAD_REQUESTS]
)
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(
    client, path, body, status, fragment
):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    response = client.post(path, **kwargs)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]
    assert client.post("/v2/models/alpha/infer", json=v2_body(["fun"])).status_code == 200


def test_texts_that_would_break_the_tokenizer_are_refused_before_batching():
    from modelfab.serve.protocol import ProtocolError, check_texts

    with pytest.raises(ProtocolError, match="not valid Unicode") as info:
        check_texts(["fine", "\ud800"], 10, "texts")
    assert info.value.status == 400
    assert check_texts(["fine"], 10, "texts") == ["fine"]


def test_ten_megabyte_body_is_refused_with_413(client):
    big = json.dumps(v2_body(["x" * (10 << 20)])).encode()
    response = client.post("/v2/models/alpha/infer", content=big)
    assert response.status_code == 413
    assert "exceeds the limit" in response.json()["error"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(11):
            yield b"x" * (1 << 20)

    response = client.post("/v2/models/alpha/infer", content=chunks())
    assert response.status_code == 413
    assert client.get("/v2/health/ready").status_code == 200


def test_concurrency_limit_answers_429(client):
    served = client.app.state.host.models["beta"]
    served.inflight = ServeConfig().batch.max_concurrency  # as many as allowed are in flight
    try:
        response = client.post("/v1/models/beta:classify", json={"texts": ["fun"]})
    finally:
        served.inflight = 0
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert client.post("/v1/models/beta:classify", json={"texts": ["fun"]}).status_code == 200


def test_full_queue_answers_503(client, monkeypatch):
    batcher = client.app.state.host.batcher(client.app.state.host.models["beta"])

    async def full(*_):
        raise QueueFull

    monkeypatch.setattr(batcher, "submit", full)
    response = client.post("/v1/models/beta:classify", json={"texts": ["fun"]})
    assert response.status_code == 503
    assert "queue is full" in response.json()["error"]


class RecordingEngine:
    key = "test:recording"

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.batches: list[int] = []

    def run(self, items):
        time.sleep(self.delay)
        self.batches.append(sum(len(t) for _, t in items))
        return [np.full((len(t), 1), float(len(t)), dtype=np.float32) for _, t in items]


def _batch_run(engine, config, coro_factory, metrics=None):
    from concurrent.futures import ThreadPoolExecutor

    async def main():
        batcher = MicroBatcher(engine, config, ThreadPoolExecutor(1), metrics or Metrics())
        batcher.start()
        try:
            return await coro_factory(batcher)
        finally:
            await batcher.stop()

    return asyncio.run(main())


def test_batcher_merges_concurrent_requests_up_to_max_batch():
    engine = RecordingEngine()
    config = BatchConfig(max_batch=8, max_wait_ms=200)

    async def go(batcher):
        return await asyncio.gather(*(batcher.submit(None, ["t"] * 3) for _ in range(4)))

    metrics = Metrics()
    results = _batch_run(engine, config, go, metrics)
    assert [r.shape for r in results] == [(3, 1)] * 4
    assert engine.batches == [6, 6]  # 3 + 3 fit in 8; a third request would not
    labels = {"engine": engine.key}
    assert metrics.registry.get_sample_value("modelfab_batch_size_sum", labels) == 12
    assert metrics.registry.get_sample_value("modelfab_batch_size_count", labels) == 2


def test_batcher_refuses_when_the_queue_is_full_and_times_out():
    config = BatchConfig(max_batch=1, max_wait_ms=0, queue_size=1, timeout_s=0.2)

    async def go(batcher):
        first = asyncio.ensure_future(batcher.submit(None, ["a"]))  # taken, runs 0.5 s
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(batcher.submit(None, ["b"]))  # fills the queue
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await batcher.submit(None, ["c"])
        outcomes = await asyncio.gather(first, second, return_exceptions=True)
        return outcomes

    outcomes = _batch_run(RecordingEngine(delay=0.5), config, go)
    assert all(isinstance(o, InferenceTimeout) for o in outcomes)


def test_admin_endpoints_need_the_token(client, bundles):
    unload = "/v2/repository/models/beta/unload"
    assert client.post(unload).status_code == 401
    assert client.post(unload, headers={"Authorization": "Bearer wrong"}).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post(unload, headers=auth).status_code == 200
    response = client.post("/v1/models/beta:classify", json={"texts": ["fun"]})
    assert response.status_code == 503 and "not loaded" in response.json()["error"]
    index = {m["name"]: m["state"] for m in client.post("/v2/repository/index").json()}
    assert index["beta"] == "UNLOADED" and index["alpha"] == "READY"
    assert client.post("/v2/repository/models/beta/load", headers=auth).status_code == 200
    assert client.post("/v1/models/beta:classify", json={"texts": ["fun"]}).status_code == 200
    # Requests name models, never paths: a traversal is just an unknown name.
    assert client.post("/v2/repository/models/..%2Falpha/load", headers=auth).status_code == 404
    assert client.get("/v2/models/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_admin_endpoints_are_disabled_without_a_token(bundles):
    with TestClient(create_app(ServeConfig(bundles_dir=bundles, refresh_s=0))) as c:
        response = c.post("/admin/reload", headers={"Authorization": "Bearer anything"})
        assert response.status_code == 403
        assert "disabled" in response.json()["error"]


def test_new_bundles_are_picked_up_without_restart_and_tampered_ones_refused(bundles, tmp_path):
    root = tmp_path / "bundles"
    shutil.copytree(bundles, root)
    with _client(root, refresh_s=0.1) as c:
        assert c.get("/v2/models/gamma").status_code == 404
        synthetic.student_bundle(root / "gamma", root / "alpha" / "tokenizer.json", ["u", "v"])
        broken = root / "delta"
        shutil.copytree(root / "beta", broken)
        (broken / "labels.json").write_text('["tampered", "b"]')
        deadline = time.monotonic() + 10
        while c.get("/v2/models/gamma/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c.get("/v2/models/gamma/ready").json() == {"name": "gamma", "ready": True}
        index = {m["name"]: m["state"] for m in c.post("/v2/repository/index").json()}
        assert index["delta"] == "UNAVAILABLE"  # its manifest does not match: never loaded
        assert c.post("/v2/models/delta/infer", json=v2_body(["a"])).status_code == 503
        shutil.rmtree(root / "gamma")
        deadline = time.monotonic() + 10
        while c.get("/v2/models/gamma").status_code != 404 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c.get("/v2/models/gamma").status_code == 404


def test_metrics_count_requests_errors_batches_and_queue(client):
    client.post("/v2/models/alpha/infer", json=v2_body(TEXTS))
    client.post("/v2/models/nope/infer", json=v2_body(["a"]))
    text = client.get("/metrics").text
    assert 'modelfab_requests_total{code="200",model="alpha",protocol="v2"}' in text
    assert 'modelfab_requests_total{code="404",model="_unknown",protocol="v2"}' in text
    assert 'modelfab_errors_total{code="404"}' in text
    assert "modelfab_request_latency_seconds_bucket" in text
    assert "modelfab_batch_size_bucket" in text
    assert "modelfab_queue_depth{" in text
    assert "modelfab_models_loaded 4.0" in text
    assert "modelfab_engines_loaded 3.0" in text  # alpha, beta, and one backbone for h1 + h2


def test_startup_line_lists_the_models(bundles, caplog):
    with caplog.at_level(logging.INFO, logger="modelfab.serve"), _client(bundles):
        pass
    startup = [r for r in caplog.records if r.getMessage() == "startup"]
    assert len(startup) == 1
    fields = startup[0].fields  # type: ignore[attr-defined]
    assert sorted(m["name"] for m in fields["models"]) == ["alpha", "beta", "h1", "h2"]
    assert fields["host"] == "127.0.0.1"
    from modelfab.serve.logs import JsonFormatter

    line = json.loads(JsonFormatter().format(startup[0]))
    assert line["event"] == "startup" and len(line["models"]) == 4


def test_openapi_document_is_served_with_request_schemas(client):
    doc = client.get("/openapi.json").json()
    infer = doc["paths"]["/v2/models/{name}/infer"]["post"]
    assert infer["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/InferenceRequest"
    )
    assert "RequestInput" in doc["components"]["schemas"]
    assert "/v1/models/{name}:classify" in doc["paths"]


def test_cli_serve_binds_loopback_by_default(monkeypatch, bundles):
    import uvicorn

    from modelfab.cli import main

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    monkeypatch.delenv("MODELFAB_SERVE_TOKEN", raising=False)
    assert main(["serve", "--bundles-dir", str(bundles), "--port", "0"]) == 0
    assert seen["host"] == "127.0.0.1"
    assert main(["serve", "--bundles-dir", str(bundles / "missing")]) == 2


def test_registry_catalog_serves_scenario_dot_name_newest_first(tmp_path, bundles):
    from modelfab.registry import Registry

    url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    with Registry(url) as reg:
        reg.upsert_dataset("d" * 64, "debian", "x", 10, ["text"], "/x")
        sc = reg.upsert_scenario("s" * 64, "sections", "d" * 64, {}, None)
        run = reg.start_run(sc.id, "build", {})
        common = {"run_id": run, "scenario_id": sc.id, "role": "student", "family": "bag"}
        old = reg.add_model(name="bag-int8", artifact_path=str(bundles / "beta"), **common)
        time.sleep(0.01)
        new = reg.add_model(name="bag-int8", artifact_path=str(bundles / "alpha"), **common)
        teacher_dir = tmp_path / "teacher"  # a PyTorch teacher: a manifest, no model graph
        teacher_dir.mkdir()
        (teacher_dir / "manifest.json").write_text("{}")
        teacher = {**common, "role": "teacher"}
        reg.add_model(name="teacher", artifact_path=str(teacher_dir), **teacher)
        reg.add_model(name="teacher-2", artifact_path=None, **teacher)
    entries = RegistryCatalog(url=url).scan()
    assert list(entries) == ["sections.bag-int8"]
    assert entries["sections.bag-int8"].version == new[:12]
    assert entries["sections.bag-int8"].path == bundles / "alpha"
    assert RegistryCatalog(("nothing",), url=url).scan() == {}
    assert list(RegistryCatalog((new[:8],), url=url).scan()) == ["sections.bag-int8"]
    assert old != new


def test_serving_path_imports_neither_torch_nor_transformers():
    code = (
        "import sys\n"
        "import modelfab.serve.app, modelfab.serve.server, modelfab.serve.host\n"
        "import modelfab.serve.engines, modelfab.serve.catalog, modelfab.export.heads\n"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_requests_waiting_when_a_model_is_unloaded_are_told_so():
    from concurrent.futures import ThreadPoolExecutor

    from modelfab.serve.batcher import Unloaded

    async def main():
        config = BatchConfig(max_batch=1, max_wait_ms=0, timeout_s=5)
        batcher = MicroBatcher(RecordingEngine(delay=0.3), config, ThreadPoolExecutor(1), Metrics())
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(None, ["a"]))
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(batcher.submit(None, ["b"]))
        await asyncio.sleep(0)
        await batcher.stop()
        return await asyncio.gather(running, waiting, return_exceptions=True)

    start = time.monotonic()
    running, waiting = asyncio.run(main())
    assert isinstance(running, Unloaded) and isinstance(waiting, Unloaded)
    assert time.monotonic() - start < 2  # told at once, not after timeout_s
