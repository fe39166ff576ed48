"""Every error cnngraph raises on purpose is a CnnGraphError, so callers can catch ours apart from bugs."""


class CnnGraphError(Exception):
    """Base class of cnngraph's own errors."""


class ShapeError(CnnGraphError, ValueError):
    """A layer does not fit the values it is applied to (channels, sizes, ranks)."""


class GraphError(CnnGraphError, ValueError):
    """The graph itself is malformed: unknown value, duplicate name, cycle, missing output."""


class ParameterError(CnnGraphError, ValueError):
    """A parameter array has the wrong shape or a non-numeric dtype."""


class InputError(CnnGraphError, ValueError):
    """An array given to run() does not match the graph's input (rank, size, dtype)."""


class OnnxImportError(CnnGraphError, ValueError):
    """The file is not a (valid) ONNX model, or it uses ops or forms the importer does not support."""


class ExportError(CnnGraphError, ValueError):
    """The graph (or the requested opset) cannot be written as an ONNX model."""
