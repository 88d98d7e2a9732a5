"""Regression tests for defects found in review of the serving layer (batcher, host, heads)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from serve_helpers import DIM, TOKEN, make_bundles, v2_body

from modelfab.errors import IntegrityError
from modelfab.export.heads import HEAD_JSON, load_head
from modelfab.export.manifest import write_manifest
from modelfab.serve import synthetic
from modelfab.serve.app import create_app
from modelfab.serve.batcher import InferenceTimeout, MicroBatcher, Unloaded
from modelfab.serve.catalog import DirectoryCatalog
from modelfab.serve.config import BatchConfig, ServeConfig
from modelfab.serve.host import ModelHost
from modelfab.serve.metrics import Metrics


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    return make_bundles(tmp_path_factory.mktemp("review"))


def _copy(bundles, tmp_path):
    root = tmp_path / "bundles"
    shutil.copytree(bundles, root)
    return root


def _client(root, **overrides):
    config = ServeConfig(bundles_dir=root, refresh_s=0.0, admin_token=TOKEN, **overrides)
    return TestClient(create_app(config))


class Engine:
    key = "test:review"

    def __init__(self, wrong_first: bool = False):
        self.wrong_first = wrong_first
        self.calls = 0

    def run(self, items):
        self.calls += 1
        if self.wrong_first and self.calls == 1:
            return []  # one result too few: a broken engine
        return [np.zeros((len(t), 1), dtype=np.float32) for _, t in items]


def test_stop_resolves_requests_gathered_into_a_batch_not_yet_run():
    """A request the loop has taken into a batch that is still filling (max_wait_ms) is in
    neither the queue nor the running batch; unloading must still answer it at once."""

    async def main():
        config = BatchConfig(max_batch=8, max_wait_ms=5000, timeout_s=5)
        batcher = MicroBatcher(Engine(), config, ThreadPoolExecutor(1), Metrics())
        batcher.start()
        request = asyncio.ensure_future(batcher.submit(None, ["a"]))
        await asyncio.sleep(0.05)  # taken off the queue, waiting for the batch to fill
        assert batcher.queue.empty()
        await batcher.stop()
        return (await asyncio.gather(request, return_exceptions=True))[0]

    start = time.monotonic()
    outcome = asyncio.run(main())
    assert isinstance(outcome, Unloaded), outcome
    assert time.monotonic() - start < 2  # not after timeout_s


def test_batch_loop_survives_an_engine_returning_the_wrong_number_of_results():
    async def main():
        config = BatchConfig(max_batch=1, max_wait_ms=0, timeout_s=1)
        batcher = MicroBatcher(Engine(wrong_first=True), config, ThreadPoolExecutor(1), Metrics())
        batcher.start()
        try:
            first = await asyncio.gather(batcher.submit(None, ["a"]), return_exceptions=True)
            second = await batcher.submit(None, ["b"])
        finally:
            await batcher.stop()
        return first[0], second

    first, second = asyncio.run(main())
    assert isinstance(first, Exception) and not isinstance(first, InferenceTimeout), first
    assert second.shape == (1, 1)  # the loop is still running


def _broken_graph(root):
    """A bundle whose manifest matches its files but whose model.onnx onnxruntime rejects."""
    broken = root / "broken"
    shutil.copytree(root / "alpha", broken)
    (broken / "model.onnx").write_bytes(b"not an onnx graph")
    write_manifest(broken)
    return broken


def test_a_bundle_onnxruntime_cannot_load_does_not_stop_the_server(bundles, tmp_path):
    root = _copy(bundles, tmp_path)
    _broken_graph(root)
    with _client(root) as c:
        assert c.get("/v2/health/ready").status_code == 200
        assert c.post("/v2/models/alpha/infer", json=v2_body(["fun"])).status_code == 200
        index = {m["name"]: m["state"] for m in c.post("/v2/repository/index").json()}
        assert index["broken"] == "UNAVAILABLE"
        assert index["h1"] == index["h2"] == "READY"  # models after it in the scan are loaded
        assert c.post("/v2/models/broken/infer", json=v2_body(["a"])).status_code == 503
        auth = {"Authorization": f"Bearer {TOKEN}"}
        changes = c.post("/admin/reload", headers=auth).json()
        assert "broken" not in changes["failed"]  # the same broken bundle is not retried


def test_a_head_whose_dim_does_not_fit_an_already_loaded_backbone_is_refused(bundles, tmp_path):
    root = _copy(bundles, tmp_path)
    backbone = root / "backbones" / load_head(root / "h1").backbone_sha256
    synthetic.head_bundle(root / "h3", backbone, ["m", "n"], DIM + 1, seed=6)
    with _client(root) as c:
        index = {m["name"]: m["state"] for m in c.post("/v2/repository/index").json()}
        assert index["h1"] == "READY" and index["h3"] == "UNAVAILABLE"
        assert c.post("/v2/models/h1/infer", json=v2_body(["fun"])).status_code == 200


@pytest.mark.parametrize("sha", ["../elsewhere/" + "a" * 64, "A" * 64, "", None])
def test_load_head_refuses_a_backbone_id_that_is_not_a_sha256(bundles, tmp_path, sha):
    head = tmp_path / "h"
    shutil.copytree(bundles / "h1", head)
    meta = json.loads((head / HEAD_JSON).read_text())
    meta["backbone_sha256"] = sha
    (head / HEAD_JSON).write_text(json.dumps(meta))
    write_manifest(head)  # self-consistent: the manifest check alone does not catch it
    with pytest.raises(IntegrityError, match="backbone_sha256"):
        load_head(head)


def test_concurrent_rescans_do_not_unload_the_same_model_twice(bundles, tmp_path):
    root = _copy(bundles, tmp_path)
    config = ServeConfig(bundles_dir=root, refresh_s=0.0)

    async def main():
        host = ModelHost(DirectoryCatalog(root), config, Metrics())
        try:
            await host.refresh()
            shutil.rmtree(root / "beta")
            async with host._lock:  # e.g. an admin load in progress: both rescans wait on it
                first = asyncio.ensure_future(host.refresh())
                second = asyncio.ensure_future(host.refresh())
                await asyncio.sleep(0.5)
            return await asyncio.gather(first, second, return_exceptions=True), set(host.models)
        finally:
            await host.close()

    outcomes, models = asyncio.run(main())
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    assert sum("beta" in o["unloaded"] for o in outcomes) == 1
    assert "beta" not in models and "alpha" in models


def test_two_concurrent_unloads_of_one_model_answer_200_and_404(bundles, tmp_path):
    import httpx

    app = create_app(ServeConfig(bundles_dir=_copy(bundles, tmp_path), admin_token=TOKEN))
    unload, auth = "/v2/repository/models/beta/unload", {"Authorization": f"Bearer {TOKEN}"}

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                async with app.state.host._lock:  # a load in progress: both unloads wait
                    first = asyncio.ensure_future(c.post(unload, headers=auth))
                    second = asyncio.ensure_future(c.post(unload, headers=auth))
                    await asyncio.sleep(0.2)
                return await asyncio.gather(first, second)

    responses = asyncio.run(main())
    assert sorted(r.status_code for r in responses) == [200, 404]
    assert all("error" in r.json() for r in responses if r.status_code != 200)


def test_a_bundle_whose_labels_do_not_fit_its_graph_is_refused(bundles, tmp_path):
    root = _copy(bundles, tmp_path)
    odd = root / "odd"
    shutil.copytree(root / "alpha", odd)  # a 3-class graph
    (odd / "labels.json").write_text(json.dumps(["only", "two"]))
    write_manifest(odd)
    with _client(root) as c:
        index = {m["name"]: m["state"] for m in c.post("/v2/repository/index").json()}
        assert index["odd"] == "UNAVAILABLE" and index["alpha"] == "READY"
