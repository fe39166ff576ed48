"""Which ONNX pooling form gives PyTorch's window sizes: the exporter's ceil_mode choice (no onnx import).

ONNX's ceil formula keeps a last window that starts in the right padding, PyTorch drops it (pytorch #71549),
and runtimes disagree on the divisor of a last average window that overhangs the padded input (pytorch
#183528). So ceil_mode=1 is written only where it gives PyTorch's sizes on both axes; the pooling rules in
cnngraph/layers/pooling.py write the rest as explicit padding or window sums.
"""
from __future__ import annotations

import numpy as np

from ..shapes import average_pool_divisor
from .shared import onnx_window_count, overhang


class Axis:
    """One spatial axis of a pooling node, with PyTorch's output size ``out``."""

    def __init__(self, size, kernel, stride, pad_begin, pad_end, dilation, out):
        self.size, self.kernel, self.stride, self.dilation, self.out = size, kernel, stride, dilation, out
        self.pad_begin, self.pad_end = pad_begin, pad_end
        self.floor, self.ceil = (onnx_window_count(size, kernel, stride, pad_begin, pad_end, dilation, ceil)
                                 for ceil in (False, True))          # ONNX's two formulas
        self.overhang = overhang(size, out, kernel, stride, pad_begin, pad_end, dilation)

    def divisor(self, count_include_pad: bool) -> np.ndarray:
        """PyTorch's per-position divisor: taps inside the padded input (or the input alone)."""
        return average_pool_divisor(self.size, self.out, self.kernel, self.stride, self.pad_begin, self.pad_end,
                                    count_include_pad, self.dilation)


def pool_axes(graph, n) -> list[Axis]:
    """The spatial axes of pooling node ``n`` of ``graph`` (one per kernel dim; pads are the begins, then the
    ends)."""
    a, size = n.attrs, graph.type_of(n.inputs[0]).shape[2:]
    dims = len(a["kernel_size"])
    dilation = a.get("dilation", (1,) * dims)
    return [Axis(size[i], a["kernel_size"][i], a["stride"][i], a["pads"][i], a["pads"][dims + i], dilation[i],
                 n.type.shape[2 + i]) for i in range(dims)]


def rounding(axes: list[Axis]) -> str:
    """Which ONNX ceil_mode gives PyTorch's sizes on every axis. PyTorch drops a ceil window that would start in
    the right padding (pytorch #71549), ONNX's formula keeps it: there PyTorch's size is the floor size. When
    one axis needs ceil and the other such a drop, neither ceil_mode fits ("mixed")."""
    if all(axis.out == axis.floor for axis in axes):
        return "floor"
    return "ceil" if all(axis.out == axis.ceil for axis in axes) else "mixed"


def end_pads(axes: list[Axis]) -> list[int]:
    """Pad's pads extending (N, C, *spatial) at the end of each spatial axis so that floor rounding gives
    PyTorch's sizes."""
    return [0] * (2 + len(axes)) + [0, 0] + [axis.overhang for axis in axes]


__all__ = ["Axis", "pool_axes", "rounding", "end_pads"]
