"""Compression of trained students: layer dropping, attention-head pruning (structural, on the
PyTorch module) and quantization / graph-optimisation recipes (on the exported ONNX graph)."""
