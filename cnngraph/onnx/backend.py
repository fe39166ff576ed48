"""cnngraph as an ONNX backend (onnx.backend.base.Backend), so ONNX's own backend test suite can run through it.

``prepare`` imports the model with ``cnngraph.load_onnx`` (initializers are constants; an unsupported op raises
OnnxImportError, listing every such node) and optionally optimizes it. A model older than the oldest opset
cnngraph imports (the suite's PyTorch cases are opset 6, whose Add/Mul still carry a ``broadcast`` attribute and
whose BatchNormalization an ``is_test`` one) is first brought to that opset by ONNX's own version converter,
unless ``upgrade=False``. ``run`` runs the NumPy backend on the data inputs (the graph inputs without an
initializer, in order) and returns the outputs as a tuple in graph-output order. The device is the CPU only.

    from onnx.backend.test import BackendTest
    from cnngraph.onnx.backend import CnnGraphBackend
    suite = BackendTest(CnnGraphBackend, __name__).include(r"^test_Conv2d_cpu$")
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep, Device, DeviceType


def upgraded(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model at cnngraph's oldest importable opset if it is older (onnx.version_converter), else itself."""
    from onnx import version_converter

    from .schema import MIN_OPSET

    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if versions and versions[0] < MIN_OPSET:
        return version_converter.convert_version(model, MIN_OPSET)
    return model


class CnnGraphRep(BackendRep):
    """A model imported (and, if asked, optimized) once, run many times on the NumPy backend."""

    def __init__(self, graph) -> None:
        self.graph = graph

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        import cnngraph as cg

        if isinstance(inputs, dict):
            arrays = [inputs[name] for name in self.graph.inputs]
        else:
            arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
        result = cg.run(self.graph, *arrays)
        return result if isinstance(result, tuple) else (result,)


class CnnGraphBackend(Backend):
    """prepare(model, device="CPU", level=0, upgrade=True): import with cg.load_onnx (after upgrading an opset
    older than cnngraph imports), optimize at ``level`` (0: as imported)."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> CnnGraphRep:
        import cnngraph as cg

        if not cls.supports_device(device):
            raise ValueError(f"cnngraph runs on the CPU only, not {device!r}")
        if kwargs.get("upgrade", True):
            model = upgraded(model)
        graph = cg.load_onnx(model)
        level = kwargs.get("level", 0)
        return CnnGraphRep(cg.optimize(graph, level=level) if level else graph)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU
