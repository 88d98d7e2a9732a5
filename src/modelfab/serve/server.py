"""Run the app under uvicorn: one worker (models are loaded once), uvloop and httptools when
installed, no access log (Prometheus counts requests; errors are logged as JSON)."""

from __future__ import annotations

import importlib.util

from modelfab.errors import InputError
from modelfab.serve import logs
from modelfab.serve.config import LOOPBACK, ServeConfig


def serve(config: ServeConfig, log_level: str = "info") -> None:
    import uvicorn

    from modelfab.serve.app import create_app

    if config.bundles_dir is not None and not config.bundles_dir.is_dir():
        raise InputError(f"--bundles-dir {config.bundles_dir} is not a directory")
    logs.configure(log_level)
    if config.host != LOOPBACK:
        logs.log("binding_beyond_loopback", host=config.host, admin=config.admin_token is not None)
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        access_log=False,
        proxy_headers=False,  # no proxy is trusted: X-Forwarded-* are left alone
        log_config=None,
        log_level=log_level,
        backlog=2048,
        timeout_keep_alive=30,
    )
