"""Typed settings of the server: where models come from, batching, limits, security."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from modelfab.errors import InputError

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class BatchConfig:
    """Dynamic micro-batching and back-pressure, per model (or per shared backbone)."""

    max_batch: int = 32  # texts per backbone/model run
    max_wait_ms: float = 2.0  # how long a batch waits to fill once it has a first request
    queue_size: int = 256  # requests waiting per batcher; beyond: 503
    max_concurrency: int = 128  # requests in flight per model; beyond: 429
    timeout_s: float = 10.0  # a request waiting longer than this gets 504

    def __post_init__(self) -> None:
        for name in ("max_batch", "queue_size", "max_concurrency"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0 or self.timeout_s <= 0:
            raise InputError("max_wait_ms must be >= 0 and timeout_s > 0")


@dataclass(frozen=True)
class ServeConfig:
    host: str = LOOPBACK  # loopback unless told otherwise
    port: int = 8080
    bundles_dir: Path | None = None  # serve the bundles under this folder instead of the registry
    models: tuple[str, ...] = ()  # served names or model ids to host; empty: all
    batch: BatchConfig = field(default_factory=BatchConfig)
    max_body_bytes: int = 1 << 20  # larger bodies get 413
    max_texts: int = 256  # texts per request; more get 413
    admin_token: str | None = None  # load/unload/reload need it; None disables them
    refresh_s: float = 5.0  # how often the catalog is rescanned for new models; 0: never
    inference_threads: int = 2  # threads running batches (onnxruntime releases the GIL)
    intra_op_threads: int = 1  # onnxruntime threads per session

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InputError(f"port must be in 0..65535, got {self.port}")
        if self.max_body_bytes < 1024 or self.max_texts < 1:
            raise InputError("max_body_bytes must be >= 1024 and max_texts >= 1")
        if self.inference_threads < 1 or self.intra_op_threads < 1:
            raise InputError("inference_threads and intra_op_threads must be >= 1")
        if self.admin_token is not None and len(self.admin_token) < 16:
            raise InputError("admin token must be at least 16 characters")

    @staticmethod
    def token_from_env() -> str | None:
        return os.environ.get("MODELFAB_SERVE_TOKEN") or None
