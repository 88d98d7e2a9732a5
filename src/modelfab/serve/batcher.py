"""Dynamic micro-batching: one bounded asyncio queue and one batch loop per engine.

Requests wait in the queue; the loop takes the first, then whatever else arrives within
`max_wait_ms` up to `max_batch` texts, and runs the batch in a worker thread (onnxruntime and
tokenizers release the GIL), so the event loop keeps accepting requests meanwhile. A full queue
is refused at once (the caller answers 503) instead of growing without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor

import numpy as np

from modelfab.export.heads import Head
from modelfab.serve.config import BatchConfig
from modelfab.serve.engines import Engine
from modelfab.serve.logs import log
from modelfab.serve.metrics import Metrics


class QueueFull(Exception):
    """The batcher's queue is at its bound."""


class Unloaded(QueueFull):
    """The model was unloaded while the request waited."""


class InferenceTimeout(Exception):
    """A request waited longer than timeout_s."""


Pending = tuple[Head | None, Sequence[str], asyncio.Future]


class MicroBatcher:
    def __init__(self, engine: Engine, config: BatchConfig, executor: Executor, metrics: Metrics):
        self.engine = engine
        self.config = config
        self.executor = executor
        self.queue: asyncio.Queue[Pending] = asyncio.Queue(maxsize=config.queue_size)
        self.depth = metrics.queue_depth.labels(engine.key)
        self.batch_size = metrics.batch_size.labels(engine.key)
        self.batch_seconds = metrics.batch_seconds.labels(engine.key)
        self._carry: Pending | None = None
        self._running: list[Pending] = []  # the batch being gathered or run now
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        waiting = [*self._running, *([self._carry] if self._carry else [])]
        while not self.queue.empty():
            waiting.append(self.queue.get_nowait())
        for *_, future in waiting:
            if not future.done():
                future.set_exception(Unloaded())

    async def submit(self, head: Head | None, texts: Sequence[str]) -> np.ndarray:
        """Probabilities for `texts`; QueueFull or InferenceTimeout instead of waiting forever."""
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((head, texts, future))
        except asyncio.QueueFull:
            raise QueueFull from None
        self.depth.set(self.queue.qsize())
        try:
            return await asyncio.wait_for(future, self.config.timeout_s)
        except TimeoutError:
            raise InferenceTimeout from None

    async def _next(self, timeout: float | None) -> Pending | None:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        if not self.queue.empty():
            return self.queue.get_nowait()
        if timeout is not None and timeout <= 0:
            return None
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    async def _gather(self) -> list[Pending]:
        first = await self._next(None)
        assert first is not None
        batch, n = [first], len(first[1])
        self._running = batch  # off the queue already: stop() must still answer these
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.max_wait_ms / 1000
        while n < self.config.max_batch:
            item = await self._next(deadline - loop.time())
            if item is None:
                break
            if n + len(item[1]) > self.config.max_batch:
                self._carry = item  # first of the next batch
                break
            batch.append(item)
            n += len(item[1])
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [p for p in await self._gather() if not p[2].done()]  # drop timed-out ones
            self.depth.set(self.queue.qsize())
            if not batch:
                continue
            self._running = batch
            items = [(head, texts) for head, texts, _ in batch]
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(self.executor, self.engine.run, items)
                if len(results) != len(batch):
                    raise RuntimeError(f"engine returned {len(results)} results for {len(batch)}")
            except Exception as exc:  # a broken batch fails its requests, not the loop
                log("batch_failed", logging.ERROR, engine=self.engine.key, error=repr(exc))
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batch_seconds.observe(time.perf_counter() - start)
            self.batch_size.observe(sum(len(texts) for _, texts in items))
            for (*_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
