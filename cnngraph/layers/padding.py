"""Pad: ONNX's padding of any axes, constant, reflect or edge, as imported models contain it between layers.

Crops too (negative pads). Affine when the fill value is finite, so the linear folds see through it.
"""
from __future__ import annotations

import numpy as np

from ..autodiff.registry import gradient
from ..errors import OnnxImportError, ShapeError
from ..layer import Layer
from ..onnx.handler_tools import Unsupported
from ..onnx.mapping import exports, imports
from ..onnx.shared import axis_index
from ..shapes import TensorType


class Pad(Layer):
    """ONNX's Pad. Affine when the fill value is finite.

    Args:
        pads: the begin of every axis, then the end of every axis (2 × rank numbers); negative values crop.
        mode: "constant" (fill with ``value``), "reflect" or "edge"; default "constant".
        value: the fill value of mode "constant" (default 0).
    """
    prefix = "pad"
    linear = True
    MODES = ("constant", "reflect", "edge")

    @classmethod
    def example(cls):
        return cls((0, 0, 1, 1, 0, 0, 1, 1)), [(None, 3, 4, 5)]

    def __init__(self, pads: tuple[int, ...], mode: str = "constant", value: float = 0.0):
        if mode not in self.MODES:
            raise ValueError(f"Pad: mode must be one of {self.MODES}, got {mode!r}")
        super().__init__(pads=tuple(int(p) for p in pads), mode=mode, value=float(value))

    @classmethod
    def per_sample(cls, attrs, rank):
        return attrs["pads"][0] == attrs["pads"][rank] == 0

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        pads = attrs["pads"]
        if len(pads) != 2 * x.rank:
            raise ShapeError(f"pads {list(pads)} must hold 2 values per axis of {x.describe()}")
        shape = []
        for axis, dim in enumerate(x.shape):
            begin, end = pads[axis], pads[x.rank + axis]
            if begin == end == 0:
                shape.append(dim)
                continue
            if not isinstance(dim, int):
                raise ShapeError(f"cannot pad the symbolic axis {axis} of {x.describe()}")
            size = dim + begin + end
            if size < 1 or (attrs["mode"] == "reflect" and max(begin, end) >= dim):
                raise ShapeError(f"pads {list(pads)} do not fit axis {axis} of {x.describe()} ({attrs['mode']})")
            shape.append(size)
        return TensorType(tuple(shape))


__all__ = ["Pad"]


# --- ONNX export -----------------------------------------------------------------------------------------------
@exports("Pad")
def _pad_to_onnx(e, n):
    """pads and constant_value are inputs since opset 11; the optional axes input (18) is not written."""
    a = n.attrs
    inputs = [n.inputs[0], e.int64(n, "pads", a["pads"])]
    if a["mode"] == "constant":
        inputs.append(e.initializer(f"{n.name}.value", np.array(a["value"], np.float32)))
    e.emit(n, "Pad", inputs, mode=a["mode"])


# --- ONNX import -----------------------------------------------------------------------------------------------
@imports("Pad")
def _pad(imp, node):
    """A Pad: its pads from the attribute (before opset 11) or the inputs (axes from opset 18)."""
    a = imp.attrs(node)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    x = imp.value(node.input[0])
    rank = len(imp.shape(x))
    if imp.opset < 11:
        pads, fill = [int(p) for p in a.get("pads", [])], float(a.get("value", 0.0))
    else:
        pads = [int(p) for p in imp.const(node.input[1], "pads")]
        value = imp.optional_const(node, 2, "constant_value")
        fill = 0.0 if value is None else float(value.item())
        axes = imp.optional_const(node, 3, "axes")
        if axes is not None:                                  # pads for the listed axes only (opset 18)
            axes = [axis_index(int(v), rank, "Pad's axis") for v in axes.reshape(-1)]
            if len(pads) != 2 * len(axes):
                raise OnnxImportError(f"{len(pads)} pads for {len(axes)} axes; Pad takes two per axis")
            full = [0] * (2 * rank)
            for i, axis in enumerate(axes):
                full[axis], full[rank + axis] = pads[i], pads[len(axes) + i]
            pads = full
    if mode not in ("constant", "reflect", "edge"):
        raise Unsupported(f"mode {mode!r}")
    imp.add(node, "Pad", [x], dict(pads=tuple(pads), mode=mode, value=fill))


# --- gradients -------------------------------------------------------------------------------------------------
@gradient("Pad")
def _pad_gradient(b, node, dy):
    """Constant padding: ∂x is ∂y cropped back, a Pad by the negated pads. Reflect and edge: output index j of a
    padded axis reads input index pad_source(j - begin), so ∂y is added back along each padded axis."""
    if node.attrs["mode"] == "constant":
        return {0: b.add(node, "x", "Pad", [dy], pads=tuple(-p for p in node.attrs["pads"]), mode="constant",
                         value=0.0)}
    from .slicing import gather_back
    shape, pads = b.shape(node.inputs[0]), node.attrs["pads"]
    rank = len(shape)
    maps = {axis: ([pad_source(j - pads[axis], shape[axis], node.attrs["mode"])
                    for j in range(pads[axis] + shape[axis] + pads[rank + axis])], shape[axis])
            for axis in range(rank) if pads[axis] or pads[rank + axis]}
    return {0: gather_back(b, node, dy, maps)}


def pad_source(i: int, size: int, mode: str) -> int:
    """The input index that index i (counted from the input's start, may be outside) of a padded axis reads."""
    if 0 <= i < size:
        return i
    if mode == "edge":
        return min(max(i, 0), size - 1)
    return -i if i < 0 else 2 * (size - 1) - i                 # reflect: the edge itself is not repeated
