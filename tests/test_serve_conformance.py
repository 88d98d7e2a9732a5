"""Conformance with the Open Inference Protocol (KServe v2 REST).

The JSON schemas below are transcribed from the protocol's published specification
(kserve "Open Inference Protocol" / predict-api v2, rest_predict_v2.yaml: ServerLiveResponse,
ServerReadyResponse, ServerMetadataResponse, ModelReadyResponse, ModelMetadataResponse,
InferenceRequest, InferenceResponse and the error body), written out here so the tests run
offline. Every v2 endpoint's answers, successes and errors, are checked against them, and the
requests a protocol client sends are checked against the request schema before they are sent,
so what passes here is what such a client sends and expects.
"""

from __future__ import annotations

import jsonschema
import pytest
from fastapi.testclient import TestClient
from serve_helpers import make_bundles

from modelfab.serve.app import create_app
from modelfab.serve.config import ServeConfig

DATATYPES = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip
PARAMETERS = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}
TENSOR_DATA = {"type": "array"}  # row-major, flat or nested, of the tensor's datatype
METADATA_TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string", "enum": DATATYPES},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
}
SCHEMAS = {
    "server_live": {
        "type": "object",
        "required": ["live"],
        "properties": {"live": {"type": "boolean"}},
    },
    "server_ready": {
        "type": "object",
        "required": ["ready"],
        "properties": {"ready": {"type": "boolean"}},
    },
    "server_metadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "model_ready": {
        "type": "object",
        "required": ["name", "ready"],
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
    },
    "model_metadata": {
        "type": "object",
        "required": ["name", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": METADATA_TENSOR},
            "outputs": {"type": "array", "items": METADATA_TENSOR},
            "parameters": {"type": "object"},
        },
    },
    "inference_request": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": PARAMETERS,
            "inputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "shape", "datatype", "data"],
                    "properties": {
                        "name": {"type": "string"},
                        "shape": {"type": "array", "items": {"type": "integer"}},
                        "datatype": {"type": "string", "enum": DATATYPES},
                        "parameters": PARAMETERS,
                        "data": TENSOR_DATA,
                    },
                },
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "parameters": PARAMETERS},
                },
            },
        },
    },
    "inference_response": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": PARAMETERS,
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "shape", "datatype", "data"],
                    "properties": {
                        "name": {"type": "string"},
                        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                        "datatype": {"type": "string", "enum": DATATYPES},
                        "parameters": PARAMETERS,
                        "data": TENSOR_DATA,
                    },
                },
            },
        },
    },
    "error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
}


def conforms(payload: object, schema: str) -> None:
    jsonschema.validate(payload, SCHEMAS[schema])


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    bundles = make_bundles(tmp_path_factory.mktemp("conformance"))
    with TestClient(create_app(ServeConfig(bundles_dir=bundles, refresh_s=0))) as c:
        yield c


def request_body(texts: list[str], **extra) -> dict:
    body = {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}
    body.update(extra)
    conforms(body, "inference_request")  # what we send is what a protocol client sends
    return body


def test_server_health_and_metadata(client):
    for path, schema in [
        ("/v2/health/live", "server_live"),
        ("/v2/health/ready", "server_ready"),
        ("/v2", "server_metadata"),
    ]:
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        conforms(response.json(), schema)
    assert client.get("/v2/health/live").json()["live"] is True
    assert client.get("/v2/health/ready").json()["ready"] is True


@pytest.mark.parametrize("name", ["alpha", "h2"])
def test_model_metadata_and_readiness(client, name):
    meta = client.get(f"/v2/models/{name}")
    assert meta.status_code == 200
    conforms(meta.json(), "model_metadata")
    body = meta.json()
    assert body["name"] == name
    assert body["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    version = body["versions"][0]
    ready = client.get(f"/v2/models/{name}/ready")
    assert ready.status_code == 200
    conforms(ready.json(), "model_ready")
    for path, schema in [
        (f"/v2/models/{name}/versions/{version}", "model_metadata"),
        (f"/v2/models/{name}/versions/{version}/ready", "model_ready"),
    ]:
        response = client.get(path)
        assert response.status_code == 200
        conforms(response.json(), schema)


@pytest.mark.parametrize("name", ["alpha", "h1", "h2"])
def test_infer_response_follows_the_metadata(client, name):
    meta = client.get(f"/v2/models/{name}").json()
    texts = ["fun game", "vim", "data toolkit"]
    response = client.post(f"/v2/models/{name}/infer", json=request_body(texts, id="abc"))
    assert response.status_code == 200
    body = response.json()
    conforms(body, "inference_response")
    assert body["model_name"] == name and body["id"] == "abc"
    declared = {t["name"]: t for t in meta["outputs"]}
    for output in body["outputs"]:
        spec = declared[output["name"]]  # only declared outputs come back
        assert output["datatype"] == spec["datatype"]
        assert len(output["shape"]) == len(spec["shape"])
        assert all(d == -1 or d == s for d, s in zip(spec["shape"], output["shape"], strict=True))
        assert output["shape"][0] == len(texts)
        size = 1
        for dim in output["shape"]:
            size *= dim
        assert len(output["data"]) == size  # flat row-major data matches the shape
    version = meta["versions"][0]
    again = client.post(f"/v2/models/{name}/versions/{version}/infer", json=request_body(texts))
    assert again.status_code == 200
    conforms(again.json(), "inference_response")


def test_generated_id_when_the_request_has_none(client):
    body = client.post("/v2/models/alpha/infer", json=request_body(["fun"])).json()
    conforms(body, "inference_response")
    assert isinstance(body["id"], str) and body["id"]


@pytest.mark.parametrize(
    "method,path,body,status",
    [
        ("get", "/v2/models/nope", None, 404),
        ("get", "/v2/models/nope/ready", None, 404),
        ("get", "/v2/models/alpha/versions/nope", None, 404),
        ("post", "/v2/models/nope/infer", {"inputs": []}, 404),
        ("post", "/v2/models/alpha/infer", {"inputs": "not a list"}, 422),
        (
            "post",
            "/v2/models/alpha/infer",
            {"inputs": [{"name": "text", "shape": [1], "datatype": "INT64", "data": [3]}]},
            400,
        ),
    ],  # fmt: skip
)
def test_errors_use_the_protocol_error_body(client, method, path, body, status):
    response = getattr(client, method)(path, **({"json": body} if body is not None else {}))
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    conforms(response.json(), "error")


def test_served_openapi_request_schema_accepts_protocol_requests(client):
    """The OpenAPI document's InferenceRequest takes what the protocol's schema takes."""
    doc = client.get("/openapi.json").json()
    components = doc["components"]["schemas"]
    # The request schema with the components its $refs point to beside it.
    schema = {"components": {"schemas": components}, **components["InferenceRequest"]}
    validator = jsonschema.Draft202012Validator(schema)
    for sample in [
        request_body(["a"]),
        request_body(["a", "b"], id="x", parameters={"p": 1}, outputs=[{"name": "label"}]),
    ]:
        validator.validate(sample)
    assert schema["required"] == ["inputs"]
