"""Backends: the NumPy executor (and, later, ONNX export and the onnxruntime runner)."""
