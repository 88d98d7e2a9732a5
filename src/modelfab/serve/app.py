"""The FastAPI application: thin handlers over ModelHost and the protocol helpers.

Every error answers {"error": "..."} (the KServe v2 error body) with its status: 400 malformed
JSON or a tensor the protocol rejects, 401/403 admin token, 404 unknown model or route, 413 body
or batch too large, 422 a request that does not fit the schema, 429 a model's concurrency limit,
503 queue full or model not ready, 504 inference timeout.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import numpy as np
import orjson
from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from modelfab import __version__
from modelfab.errors import NotFoundError
from modelfab.serve import protocol as p
from modelfab.serve.batcher import InferenceTimeout, QueueFull, Unloaded
from modelfab.serve.catalog import Catalog, DirectoryCatalog, RegistryCatalog
from modelfab.serve.config import ServeConfig
from modelfab.serve.host import ModelHost, Served
from modelfab.serve.logs import log
from modelfab.serve.metrics import UNKNOWN, Metrics

M = TypeVar("M", bound=BaseModel)
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": p.ErrorBody, "description": why}
    for code, why in {
        400: "malformed JSON or a tensor the protocol rejects",
        404: "unknown model",
        413: "body or batch too large",
        422: "request does not fit the schema",
        429: "the model's concurrency limit is reached",
        503: "queue full or model not ready",
        504: "inference timed out",
    }.items()
}
ADMIN_ERRORS = {
    **ERRORS,
    401: {"model": p.ErrorBody, "description": "missing or wrong token"},
    403: {"model": p.ErrorBody, "description": "admin endpoints disabled (no token configured)"},
}


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str) -> Response:
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return _json({"error": message}, status, headers)


class BodyLimit:
    """Pure ASGI middleware: bodies over `max_bytes` get 413 before they are read whole."""

    def __init__(self, app: Any, max_bytes: int, metrics: Metrics):
        self.app, self.max_bytes, self.metrics = app, max_bytes, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for key, value in scope["headers"]:
            if key == b"content-length":
                if not value.isdigit():
                    return await self._refuse(send, 400, "invalid Content-Length header")
                if int(value) > self.max_bytes:
                    return await self._refuse(send, 413, self._message(int(value)))
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise StarletteHTTPException(413, self._message(received))
            return message

        await self.app(scope, limited, send)

    def _message(self, size: int) -> str:
        return f"request body of {size} bytes exceeds the limit of {self.max_bytes} bytes"

    async def _refuse(self, send: Callable, status: int, message: str) -> None:
        self.metrics.errors.labels(str(status)).inc()
        response = _error(status, message)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": response.body})


def parse(model: type[M], body: bytes) -> M:
    """Validate a JSON body whatever its Content-Type (clients such as `curl -d` send none or a
    form type): 400 for malformed JSON, 422 for JSON that does not fit the schema."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise p.ProtocolError(400, f"malformed JSON: {first['msg']}") from None
        where = ".".join(str(x) for x in first["loc"]) or "body"
        raise p.ProtocolError(422, f"{where}: {first['msg']}") from None


def _body(model: type[BaseModel]) -> dict[str, Any]:
    """openapi_extra documenting a body the handler parses itself (see `parse`)."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def _with_bodies(app: FastAPI, models: tuple[type[BaseModel], ...]) -> Callable[[], dict]:
    """app.openapi that also carries the schemas of the self-parsed request bodies."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes,
            )  # fmt: skip
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(definition.pop("$defs", {}))
                components[model.__name__] = definition
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def default_catalog(config: ServeConfig) -> Catalog:
    if config.bundles_dir is not None:
        return DirectoryCatalog(config.bundles_dir, config.models)
    return RegistryCatalog(config.models)


def create_app(config: ServeConfig, catalog: Catalog | None = None) -> FastAPI:
    metrics = Metrics()
    host = ModelHost(catalog or default_catalog(config), config, metrics)

    async def refresher() -> None:
        while True:
            await asyncio.sleep(config.refresh_s)
            try:
                changes = await host.refresh()
            except Exception as exc:  # a broken registry must not stop serving
                log("catalog_refresh_failed", logging.ERROR, error=str(exc))
                continue
            if any(changes.values()):
                log("catalog_refreshed", changes=changes)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        changes = await host.refresh()
        # Loaded models and libraries live as long as the server: keep them out of the
        # collector's generations so full collections stay short (tail latency).
        gc.collect()
        gc.freeze()
        host.ready = True
        log(
            "startup",
            host=config.host,
            port=config.port,
            models=[
                {
                    "name": m.name,
                    "version": m.entry.version,
                    "form": m.entry.kind,
                    "backbone": m.backbone,
                    "labels": len(m.labels),
                }
                for m in host.models.values()
            ],  # fmt: skip
            engines=len(host.groups),
            failed=changes["failed"],
        )
        task = asyncio.create_task(refresher()) if config.refresh_s > 0 else None
        yield
        host.ready = False
        if task is not None:
            task.cancel()
        await host.close()

    app = FastAPI(
        title="modelfab serve",
        version=__version__,
        description="Open Inference Protocol (KServe v2 REST) and plain JSON classification.",
        lifespan=lifespan,
    )
    app.state.host = host
    app.state.metrics = metrics
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes, metrics=metrics)

    # ---- errors --------------------------------------------------------------------------

    @app.exception_handler(p.ProtocolError)
    async def protocol_error(_: Request, exc: p.ProtocolError) -> Response:
        metrics.errors.labels(str(exc.status)).inc()
        return _error(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        metrics.errors.labels(str(exc.status_code)).inc()
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> Response:
        log("internal_error", logging.ERROR, error=repr(exc))
        metrics.errors.labels("500").inc()
        return _error(500, f"internal error: {type(exc).__name__}")

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if bad_json is not None:
            status, message = 400, f"malformed JSON: {bad_json.get('ctx', {}).get('error', '')}"
        else:
            first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
            where = ".".join(str(x) for x in first["loc"] if x != "body") or "body"
            status, message = 422, f"{where}: {first['msg']}"
        metrics.errors.labels(str(status)).inc()
        return _error(status, message.rstrip(": "))

    # ---- inference -----------------------------------------------------------------------

    def lookup(name: str) -> Served:
        served = host.models.get(name)
        if served is None:
            if name in host.known:
                raise p.ProtocolError(503, f"model {name!r} is not loaded")
            raise p.ProtocolError(404, f"model {name!r} not found")
        return served

    def version_of(served: Served, version: str | None) -> None:
        if version is not None and version != served.entry.version:
            raise p.ProtocolError(
                404, f"model {served.name!r} has no version {version!r} (serving "
                f"{served.entry.version!r})"
            )  # fmt: skip

    async def classify(served: Served, texts: list[str]) -> np.ndarray:
        if served.inflight >= config.batch.max_concurrency:
            raise p.ProtocolError(429, f"model {served.name!r} has too many requests in flight")
        served.inflight += 1
        try:
            return await host.batcher(served).submit(served.head, texts)
        except Unloaded:
            raise p.ProtocolError(503, f"model {served.name!r} was unloaded") from None
        except QueueFull:
            raise p.ProtocolError(
                503, f"model {served.name!r} queue is full, retry later"
            ) from None
        except InferenceTimeout:
            raise p.ProtocolError(
                504, f"inference took longer than {config.batch.timeout_s} s"
            ) from None
        finally:
            served.inflight -= 1

    async def measured(name: str, protocol: str, work: Callable[[], Awaitable[Response]]):
        start, code = time.perf_counter(), 500
        try:
            response = await work()
            code = response.status_code
            return response
        except p.ProtocolError as exc:
            code = exc.status
            raise
        finally:
            model = name if name in host.models else UNKNOWN
            metrics.requests.labels(model, protocol, str(code)).inc()
            metrics.latency.labels(model, protocol).observe(time.perf_counter() - start)

    async def v2_infer(name: str, version: str | None, body: bytes) -> Response:
        served = lookup(name)
        version_of(served, version)
        request = parse(p.InferenceRequest, body)
        texts = p.texts_from_v2(request, config.max_texts)
        names = p.requested_outputs(request)
        proba = await classify(served, texts)
        return _json(
            {
                "model_name": name,
                "model_version": served.entry.version,
                "id": request.id if request.id is not None else uuid.uuid4().hex,
                "outputs": p.v2_outputs(proba, served.labels, names),
            }
        )

    async def infer_endpoint(request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        body = await request.body()
        return await measured(name, "v2", lambda: v2_infer(name, version, body))

    async def classify_endpoint(request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        return await measured(name, "v1", lambda: v1_classify(name, body))

    @app.post(
        "/v2/models/{name}/infer", response_model=p.InferenceResponse, responses=ERRORS,
        tags=["v2"], summary="Inference (BYTES text input)",
        openapi_extra=_body(p.InferenceRequest),
    )  # fmt: skip
    async def infer(name: str, request: Request) -> Response:
        return await infer_endpoint(request)

    @app.post(
        "/v2/models/{name}/versions/{version}/infer", response_model=p.InferenceResponse,
        responses=ERRORS, tags=["v2"], summary="Inference on a given version",
        openapi_extra=_body(p.InferenceRequest),
    )  # fmt: skip
    async def infer_version(name: str, version: str, request: Request) -> Response:
        return await infer_endpoint(request)

    async def v1_classify(name: str, body: bytes) -> Response:
        served = lookup(name)
        request = parse(p.ClassifyRequest, body)
        texts = p.check_texts(request.texts, config.max_texts, "texts")
        proba = await classify(served, texts)
        preds = p.predictions(proba, served.labels, min(request.top_k, len(served.labels)))
        return _json({"model": name, "version": served.entry.version, "predictions": preds})

    @app.post(
        "/v1/models/{name}:classify", response_model=p.ClassifyResponse, responses=ERRORS,
        tags=["v1"], summary="Classify a list of texts",
        openapi_extra=_body(p.ClassifyRequest),
    )  # fmt: skip
    async def classify_v1(name: str, request: Request) -> Response:
        return await classify_endpoint(request)

    # The hot paths also as plain Starlette routes ahead of the documented FastAPI ones: the
    # same handlers without FastAPI's per-request dependency solving (the bodies are parsed by
    # `parse` anyway). The FastAPI routes above give the OpenAPI document its operations.
    hot = [
        ("/v2/models/{name}/infer", infer_endpoint),
        ("/v2/models/{name}/versions/{version}/infer", infer_endpoint),
        ("/v1/models/{name}:classify", classify_endpoint),
    ]
    for path, endpoint in reversed(hot):
        app.router.routes.insert(
            0, Route(path, endpoint, methods=["POST"], include_in_schema=False)
        )

    # ---- health and metadata -------------------------------------------------------------

    @app.get("/v2", response_model=p.ServerMetadata, tags=["v2"])
    async def server_metadata() -> dict:
        return {"name": "modelfab", "version": __version__, "extensions": ["model_repository"]}

    @app.get("/v2/health/live", response_model=p.ServerLive, tags=["v2"])
    async def live() -> dict:
        return {"live": True}

    @app.get("/v2/health/ready", response_model=p.ServerReady, responses=ERRORS, tags=["v2"])
    async def ready() -> dict:
        if not host.ready:
            raise p.ProtocolError(503, "server is not ready: models are loading")
        return {"ready": True}

    def metadata(name: str, version: str | None) -> dict:
        served = lookup(name)
        version_of(served, version)
        return p.model_metadata(name, served.entry.version, served.labels, served.entry.kind)

    @app.get("/v2/models/{name}", response_model=p.ModelMetadata, responses=ERRORS, tags=["v2"])
    async def model_metadata(name: str) -> dict:
        return metadata(name, None)

    @app.get(
        "/v2/models/{name}/versions/{version}", response_model=p.ModelMetadata,
        responses=ERRORS, tags=["v2"],
    )  # fmt: skip
    async def model_version_metadata(name: str, version: str) -> dict:
        return metadata(name, version)

    @app.get("/v2/models/{name}/ready", response_model=p.ModelReady, responses=ERRORS, tags=["v2"])
    async def model_ready(name: str) -> dict:
        lookup(name)
        return {"name": name, "ready": True}

    @app.get(
        "/v2/models/{name}/versions/{version}/ready", response_model=p.ModelReady,
        responses=ERRORS, tags=["v2"],
    )  # fmt: skip
    async def model_version_ready(name: str, version: str) -> dict:
        version_of(lookup(name), version)
        return {"name": name, "ready": True}

    @app.get("/v1/models", tags=["v1"])
    async def list_models() -> dict:
        return {
            "models": [
                {
                    "name": m.name,
                    "version": m.entry.version,
                    "form": m.entry.kind,
                    "labels": m.labels,
                    "backbone": m.backbone,
                }
                for m in host.models.values()
            ]  # fmt: skip
        }

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    # ---- model repository (admin) --------------------------------------------------------

    def require_token(authorization: str | None) -> None:
        if config.admin_token is None:
            raise p.ProtocolError(403, "admin endpoints are disabled: start the server with "
                                  "MODELFAB_SERVE_TOKEN set")  # fmt: skip
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.encode(), config.admin_token.encode()
        ):
            raise p.ProtocolError(401, "missing or wrong bearer token")

    @app.post("/v2/repository/index", response_model=list[p.RepositoryModel], tags=["repository"])
    async def repository_index() -> list[dict]:
        rows = []
        for name, entry in sorted(host.known.items()):
            served = host.models.get(name)
            if served is not None:
                state, reason = "READY", ""
            elif name in host.unloaded:
                state, reason = "UNLOADED", "unloaded by an admin"
            else:
                state, reason = "UNAVAILABLE", "could not be loaded (see the server log)"
            rows.append({"name": name, "version": entry.version, "state": state, "reason": reason})
        return rows

    @app.post(
        "/v2/repository/models/{name}/load", response_model=p.ModelReady,
        responses=ADMIN_ERRORS, tags=["repository"],
    )  # fmt: skip
    async def repository_load(name: str, authorization: str | None = Header(None)) -> dict:
        require_token(authorization)
        host.known = await asyncio.get_running_loop().run_in_executor(None, host.catalog.scan)
        entry = host.known.get(name)
        if entry is None:
            raise p.ProtocolError(404, f"model {name!r} is not in the catalog")
        try:
            await host.load(entry)
        except p.ProtocolError:
            raise
        except Exception as exc:
            raise p.ProtocolError(422, f"model {name!r} could not be loaded: {exc}") from None
        return {"name": name, "ready": True}

    @app.post(
        "/v2/repository/models/{name}/unload", response_model=p.ModelReady,
        responses=ADMIN_ERRORS, tags=["repository"],
    )  # fmt: skip
    async def repository_unload(name: str, authorization: str | None = Header(None)) -> dict:
        require_token(authorization)
        try:
            await host.unload(name)
        except NotFoundError:  # never loaded, or unloaded by a concurrent call
            raise p.ProtocolError(404, f"model {name!r} is not loaded") from None
        return {"name": name, "ready": False}

    @app.post("/admin/reload", responses=ADMIN_ERRORS, tags=["repository"])
    async def reload(authorization: str | None = Header(None)) -> dict:
        """Rescan the catalog now, reloading unloaded models too."""
        require_token(authorization)
        return await host.refresh(include_unloaded=True)

    app.openapi = _with_bodies(app, (p.InferenceRequest, p.ClassifyRequest))  # type: ignore[method-assign]
    return app
