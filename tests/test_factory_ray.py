"""`modelfab run --engine ray`: the same recipe gives the same models as the local engine."""

from __future__ import annotations

import pytest
from factory_helpers import models_and_metrics, write_recipe

from modelfab.factory.orchestrate import RunOptions, run_recipe
from modelfab.registry import Registry

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'modelfab[ray]')")


@pytest.mark.slow
def test_ray_engine_gives_the_local_engines_models(tmp_path, monkeypatch, tiny_teacher_dir):
    monkeypatch.delenv("MODELFAB_REGISTRY_URL", raising=False)
    recipe = write_recipe(tmp_path / "r", tiny_teacher_dir, classes=("games",))
    found = {}
    for engine in ("local", "ray"):
        monkeypatch.setenv("MODELFAB_HOME", str(tmp_path / engine))
        options = RunOptions(engine=engine, threads=1, only=["tiny-games"])
        run = run_recipe(recipe, options)
        assert run.status == "succeeded" and run.engine == engine
        assert [i["status"] for i in run.scenarios] == ["built"]
        found[engine] = models_and_metrics(Registry())
    assert len(found["ray"]) == 3
    assert found["ray"] == found["local"]
    assert not ray.is_initialized()  # the local Ray started for the run is shut down


def test_ray_address_is_refused_on_the_local_engine():
    from modelfab.errors import InputError
    from modelfab.factory.engines import make_engine

    with pytest.raises(InputError, match="--address"):
        make_engine("local", address="ray://head:10001")
    assert make_engine("ray", address="ray://head:10001").address == "ray://head:10001"
