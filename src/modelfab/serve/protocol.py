"""Request and response shapes: the Open Inference Protocol (KServe v2 REST) and the plain
`/v1/models/{name}:classify` JSON endpoint. The pydantic models validate requests and give the
served OpenAPI document its schemas; `texts_from_v2` applies the protocol's tensor rules.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, Field

DATATYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
)  # fmt: skip
TEXT_INPUT = "text"
PROBABILITIES = "probabilities"
LABEL = "label"
OUTPUTS = (PROBABILITIES, LABEL)


class ProtocolError(Exception):
    """A request the protocol rejects: HTTP `status`, `message` for the {"error": ...} body."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ErrorBody(BaseModel):
    error: str


# ---- KServe v2 ----------------------------------------------------------------------------


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] = []
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: dict[str, Any] | None = None


class RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class RepositoryModel(BaseModel):
    name: str
    version: str | None = None
    state: str  # READY | UNAVAILABLE | UNLOADED
    reason: str = ""


def texts_from_v2(request: InferenceRequest, max_texts: int) -> list[str]:
    """The texts of a v2 request: one BYTES input of shape [N] or [N, 1], N >= 1."""
    if len(request.inputs) != 1:
        raise ProtocolError(400, f"expected exactly one input ({TEXT_INPUT!r}, BYTES), "
                            f"got {len(request.inputs)}")  # fmt: skip
    tensor = request.inputs[0]
    if tensor.datatype != "BYTES":
        raise ProtocolError(400, f"input {tensor.name!r} must have datatype BYTES, "
                            f"got {tensor.datatype!r}")  # fmt: skip
    shape = tensor.shape
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1) or min(shape) < 0:
        raise ProtocolError(
            400, f"input {tensor.name!r} must have shape [N] or [N, 1], got {shape}"
        )
    data = tensor.data
    if len(shape) == 2 and all(isinstance(row, list) for row in data):
        data = [x for row in data for x in row]  # nested row-major form of [N, 1]
    if not all(isinstance(x, str) for x in data):
        raise ProtocolError(400, f"input {tensor.name!r} data must be strings (BYTES)")
    if len(data) != shape[0]:
        raise ProtocolError(
            400, f"input {tensor.name!r} has {len(data)} elements but shape {shape}"
        )
    return check_texts(data, max_texts, f"input {tensor.name!r}")


def check_texts(texts: list[str], max_texts: int, where: str) -> list[str]:
    """Non-empty, within the batch limit, and valid Unicode (a lone surrogate would fail the
    tokenizer, and with it every other request of the micro-batch)."""
    if not texts:
        raise ProtocolError(400, f"empty batch: {where} holds no text")
    if len(texts) > max_texts:
        raise ProtocolError(413, f"batch of {len(texts)} texts exceeds the limit of {max_texts}")
    try:
        "".join(texts).encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(400, f"{where} holds text that is not valid Unicode") from None
    return texts


def requested_outputs(request: InferenceRequest) -> tuple[str, ...]:
    if not request.outputs:
        return OUTPUTS
    names = tuple(o.name for o in request.outputs)
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise ProtocolError(400, f"unknown output {unknown[0]!r}; this model has {list(OUTPUTS)}")
    return names


def v2_outputs(proba: np.ndarray, labels: list[str], names: tuple[str, ...]) -> list[dict]:
    n, c = proba.shape
    out = []
    for name in names:
        if name == PROBABILITIES:
            out.append({"name": name, "shape": [n, c], "datatype": "FP32", "data": proba.ravel()})
        else:
            best = [labels[i] for i in proba.argmax(axis=1)]
            out.append({"name": name, "shape": [n], "datatype": "BYTES", "data": best})
    return out


def model_metadata(name: str, version: str, labels: list[str], kind: str) -> dict:
    return {
        "name": name,
        "versions": [version],
        "platform": "onnxruntime",
        "inputs": [{"name": TEXT_INPUT, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, len(labels)]},
            {"name": LABEL, "datatype": "BYTES", "shape": [-1]},
        ],
        "parameters": {"labels": labels, "form": kind},
    }


# ---- plain JSON ---------------------------------------------------------------------------


class ClassifyRequest(BaseModel):
    texts: list[str] = Field(description="texts to classify (at least one)")
    top_k: int = Field(1, ge=1, le=1000, description="labels to return per text, best first")


class Prediction(BaseModel):
    label: str
    score: float
    top: list[dict[str, Any]] | None = None


class ClassifyResponse(BaseModel):
    model: str
    version: str
    predictions: list[Prediction]


def predictions(proba: np.ndarray, labels: list[str], top_k: int) -> list[dict]:
    best = proba.argmax(axis=1)
    out = []
    for i, row in zip(best, proba, strict=True):
        pred: dict[str, Any] = {"label": labels[i], "score": float(row[i])}
        if top_k > 1:
            order = np.argsort(-row)[:top_k]
            pred["top"] = [{"label": labels[j], "score": float(row[j])} for j in order]
        out.append(pred)
    return out
