"""The hosted models: loading (manifest verified first), unloading, rescanning the catalog.

Whole-model bundles get an engine and a batcher each. Head bundles are grouped by the sha256 of
their backbone: the first head of a backbone loads it once, every further head adds only its
weights, and all of them share that backbone's batcher, so one backbone run serves a batch of
requests to any of its heads.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from modelfab.errors import IntegrityError, ModelfabError, NotFoundError
from modelfab.export.heads import Head, load_head
from modelfab.serve.batcher import MicroBatcher
from modelfab.serve.catalog import Catalog, Entry
from modelfab.serve.config import ServeConfig
from modelfab.serve.engines import BackboneEngine, Engine, StudentEngine
from modelfab.serve.logs import log
from modelfab.serve.metrics import Metrics


@dataclass
class Served:
    entry: Entry
    labels: list[str]
    engine_key: str
    head: Head | None = None  # head models only
    inflight: int = 0  # requests being answered now (per-model concurrency limit)

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def backbone(self) -> str | None:
        return self.head.backbone_sha256 if self.head is not None else None


@dataclass
class _Group:
    engine: Engine
    batcher: MicroBatcher
    users: set[str] = field(default_factory=set)


class ModelHost:
    def __init__(self, catalog: Catalog, config: ServeConfig, metrics: Metrics):
        self.catalog = catalog
        self.config = config
        self.metrics = metrics
        self.models: dict[str, Served] = {}
        self.groups: dict[str, _Group] = {}
        self.known: dict[str, Entry] = {}  # the catalog at the last scan
        self.unloaded: set[str] = set()  # unloaded by an admin: not reloaded by a rescan
        self.failed: dict[str, str] = {}  # name -> the version that could not be loaded
        self.ready = False
        self.executor = ThreadPoolExecutor(config.inference_threads, "modelfab-infer")
        self._loader = ThreadPoolExecutor(1, "modelfab-load")  # loads never block inference
        self._lock = asyncio.Lock()
        self._rescan = asyncio.Lock()  # one rescan at a time (refresher and /admin/reload)

    # ---- loading -------------------------------------------------------------------------

    def _build(self, entry: Entry) -> tuple[Served, Engine | None]:
        """Load an entry off the event loop; returns the model and a new engine if it needs one."""
        threads, max_batch = self.config.intra_op_threads, self.config.batch.max_batch
        if entry.kind == "bundle":
            key = f"model:{entry.name}@{entry.version}"
            student = StudentEngine(entry.path, threads, max_batch, key)
            return Served(entry, student.labels, student.key), student
        head = load_head(entry.path)
        key = f"backbone:{head.backbone_sha256}"
        group = self.groups.get(key)
        if group is not None:
            engine: Engine = group.engine
            new = None
        else:
            backbone = self.catalog.backbones_dir / head.backbone_sha256
            if not backbone.is_dir():
                raise NotFoundError(
                    f"backbone {head.backbone_sha256[:12]} of {entry.name} not found"
                )
            engine = new = BackboneEngine(backbone, threads, max_batch)
        dim = getattr(engine, "dim", None)
        if dim != head.dim:  # checked for every head, not only the backbone's first
            raise IntegrityError(f"head {entry.name} expects dim {head.dim}, backbone has {dim}")
        return Served(entry, head.labels, key, head), new

    async def load(self, entry: Entry) -> Served:
        async with self._lock:
            loop = asyncio.get_running_loop()
            served, engine = await loop.run_in_executor(self._loader, self._build, entry)
            if served.engine_key not in self.groups:
                assert engine is not None
                batcher = MicroBatcher(engine, self.config.batch, self.executor, self.metrics)
                batcher.start()
                self.groups[served.engine_key] = _Group(engine, batcher)
            old = self.models.get(entry.name)
            self.models[entry.name] = served
            self.groups[served.engine_key].users.add(entry.name)
            if old is not None and old.engine_key != served.engine_key:
                await self._release(old)
            self.unloaded.discard(entry.name)
            self.failed.pop(entry.name, None)
            self._gauges()
            log(
                "model_loaded",
                name=entry.name,
                version=entry.version,
                kind=entry.kind,
                backbone=served.backbone,
            )
            return served

    async def _release(self, served: Served) -> None:
        group = self.groups.get(served.engine_key)
        if group is None:
            return
        group.users.discard(served.name)
        if not group.users:
            del self.groups[served.engine_key]
            await group.batcher.stop()

    async def unload(self, name: str) -> None:
        async with self._lock:
            served = self.models.pop(name, None)
            if served is None:
                raise NotFoundError(f"model {name!r} is not loaded")
            await self._release(served)
            self.unloaded.add(name)
            self._gauges()
            log("model_unloaded", name=name)

    def _gauges(self) -> None:
        self.metrics.models.set(len(self.models))
        self.metrics.engines.set(len(self.groups))

    # ---- the catalog ---------------------------------------------------------------------

    async def refresh(self, *, include_unloaded: bool = False) -> dict[str, list[str]]:
        """Rescan the catalog: load new or changed models, drop the ones that disappeared.
        Returns {"loaded": [...], "unloaded": [...], "failed": [...]}."""
        async with self._rescan:
            return await self._refresh(include_unloaded)

    async def _refresh(self, include_unloaded: bool) -> dict[str, list[str]]:
        loop = asyncio.get_running_loop()
        self.known = await loop.run_in_executor(self._loader, self.catalog.scan)
        changes: dict[str, list[str]] = {"loaded": [], "unloaded": [], "failed": []}
        for name in [n for n in self.models if n not in self.known]:
            await self.unload(name)
            self.unloaded.discard(name)
            changes["unloaded"].append(name)
        for name, entry in self.known.items():
            current = self.models.get(name)
            if (current is not None and current.entry == entry) or (
                name in self.unloaded and not include_unloaded
            ):
                continue
            if self.failed.get(name) == entry.version:
                continue  # the same broken bundle: do not retry it every scan
            try:
                await self.load(entry)
                changes["loaded"].append(name)
            except Exception as exc:  # ModelfabError, or one onnxruntime or a reader raised
                self.failed[name] = entry.version
                changes["failed"].append(name)
                error = str(exc) if isinstance(exc, ModelfabError) else repr(exc)
                log("model_load_failed", logging.ERROR, name=name, error=error)
        return changes

    async def close(self) -> None:
        for group in list(self.groups.values()):
            await group.batcher.stop()
        self.groups.clear()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self._loader.shutdown(wait=False, cancel_futures=True)

    def batcher(self, served: Served) -> MicroBatcher:
        return self.groups[served.engine_key].batcher
