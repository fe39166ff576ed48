"""Padding and pooling from ONNX to cnngraph's layers: handlers like those of handlers.py, kept apart for the
window arithmetic.

Each node maps to one of ours: Pad -> Pad, MaxPool -> MaxPool2d, AveragePool -> AvgPool2d, with its own
attributes. The exporter's ceil_mode forms (a Pad read by a pool, window sums times 1/divisor) come back as
the original pools through the level-1 rules passes/canon_pool_pad.py and passes/canon_window_average.py.
A ceil_mode window where PyTorch and ONNX disagree on the output size (pytorch #71549), or an average that
counts padding and overhangs it (pytorch #183528), is refused rather than guessed.
"""
from __future__ import annotations

from ..errors import OnnxImportError
from ..shapes import pool_output_size
from .handlers import Unsupported, pair, spatial
from .shared import axis_index, onnx_window_count, overhang


# --- Pad, MaxPool, AveragePool -----------------------------------------------------------------------------------
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


def _pool(imp, node):
    a = imp.attrs(node)
    maximum = node.op_type == "MaxPool"
    x = imp.value(node.input[0])
    if len(imp.shape(x)) != 4:
        raise Unsupported("only 2-D pooling (a 4-D input)")
    if maximum and int(a.get("storage_order", 0)):
        raise Unsupported("storage_order = 1")
    kernel = pair(a["kernel_shape"], None, "kernel_shape")
    stride = pair(a.get("strides"), (1, 1), "strides")
    dilation = pair(a.get("dilations"), (1, 1), "dilations")
    pads = spatial(imp, node, x, kernel, stride, dilation, a)
    ceil = bool(a.get("ceil_mode", 0))
    include = bool(a.get("count_include_pad", 0))
    size = imp.shape(x)[2:]
    expected = [onnx_window_count(size[i], kernel[i], stride[i], pads[i], pads[2 + i], dilation[i], ceil)
                for i in range(2)]
    if not maximum and ceil and include and any(
            overhang(size[i], expected[i], kernel[i], stride[i], pads[i], pads[2 + i], dilation[i]) for i in range(2)):
        raise Unsupported("a ceil_mode average counting padding whose last window overhangs it "
                          "(runtimes disagree on its divisor, pytorch #183528)")
    got = [pool_output_size(size[i], kernel[i], stride[i], pads[i], pads[2 + i], dilation[i], ceil) for i in range(2)]
    if got != expected:
        raise Unsupported(f"ceil_mode output size {expected} differs from PyTorch's {got} "
                           f"(a window starting in the padding, pytorch #71549)")
    attrs = dict(kernel_size=kernel, stride=stride, pads=pads, dilation=dilation, ceil_mode=ceil)
    if not maximum:
        attrs["count_include_pad"] = include
    imp.add(node, "MaxPool2d" if maximum else "AvgPool2d", [x], attrs)


POOL_HANDLERS = {
    "MaxPool": _pool,
    "AveragePool": _pool,
    "Pad": _pad,
}
