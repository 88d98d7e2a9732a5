"""modelfab.serve: every bundle behind one HTTP server (KServe v2 / Open Inference Protocol and a
plain JSON endpoint), dynamic micro-batching, shared backbones, limits, Prometheus metrics.

Serving imports neither torch nor transformers (a test enforces it): onnxruntime, tokenizers,
numpy, safetensors, FastAPI and uvicorn only.
"""

from modelfab.serve.config import BatchConfig, ServeConfig

__all__ = ["BatchConfig", "ServeConfig"]
