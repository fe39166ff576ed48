"""Padding and pooling from ONNX to cnngraph's layers, reading back the forms the exporter writes for PyTorch's
ceil_mode (export.py) — handlers like those of handlers.py, kept apart for that arithmetic.

Pooling with ceil_mode (the exporter's corner cases, read back):
  Pad(0) -> AveragePool(pads 0, count_include_pad=0, ceil)   -> AvgPool2d(pads of the Pad, count_include_pad=1)
  Pad(-inf) -> MaxPool                                        -> MaxPool2d with the padding merged (ceil_mode
                                                                 recovered when the Pad is exactly its overhang)
  depthwise Conv of ones -> Mul(constant 1/divisor)           -> AvgPool2d, when some ceil_mode/count_include_pad
                                                                 gives exactly those pads and divisors
  Any other Pad or Conv of ones stays what it is. A ceil_mode window where PyTorch and ONNX disagree on the
  output size (pytorch #71549), or an average that counts padding and overhangs it (pytorch #183528), is
  refused rather than guessed.
"""
from __future__ import annotations

import numpy as np

from ..errors import OnnxImportError
from ..shapes import average_pool_divisor, pool_output_size
from .handlers import Unsupported, binary, pair, spatial
from .shared import axis_index, onnx_window_count, overhang

SEARCH_TAPS = 2 ** 20             # the largest window-sum tap table (outputs × kernel per axis) matched to a pool


# --- Pad, MaxPool, AveragePool -----------------------------------------------------------------------------------
def _pad(imp, node):
    """A Pad; a zero or -inf spatial Pad read by one pooling node is first offered to it (the exporter's
    ceil_mode forms), which merges it when that is exact and writes it as a Pad otherwise."""
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
    reader = imp.sole_reader(node.output[0])
    if (mode == "constant" and rank == 4 and len(pads) == 8 and not any(pads[i] for i in (0, 1, 4, 5))
            and min(pads) >= 0 and reader is not None and reader.op_type in ("MaxPool", "AveragePool")):
        imp.deferred[node.output[0]] = ("pad", (x, (pads[2], pads[3], pads[6], pads[7]), fill, node))
        return
    imp.add(node, "Pad", [x], dict(pads=tuple(pads), mode=mode, value=fill))


def _merges_into_pool(maximum, fill, pads, include, ceil) -> bool:
    if maximum:
        return fill == -np.inf
    return fill == 0.0 and not any(pads) and not include and ceil


def _pool(imp, node):
    a = imp.attrs(node)
    maximum = node.op_type == "MaxPool"
    source = node.input[0]
    pre_pad = None
    if imp.deferred.get(source, ("",))[0] == "pad":
        x, pre_pad, fill, pad_node = imp.deferred.pop(source)[1]
        auto = a.get("auto_pad", b"NOTSET")
        if (auto.decode() if isinstance(auto, bytes) else auto) != "NOTSET" or not _merges_into_pool(
                maximum, fill, tuple(int(p) for p in a.get("pads", (0, 0, 0, 0))), bool(a.get("count_include_pad", 0)),
                bool(a.get("ceil_mode", 0))):
            top, left, bottom, right = pre_pad
            imp.add(pad_node, "Pad", [x], dict(pads=(0, 0, top, left, 0, 0, bottom, right), mode="constant", value=fill))
            x, pre_pad = pad_node.output[0], None
    else:
        x = imp.value(source)
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
    if pre_pad is not None:
        padded = [size[i] + pre_pad[i] + pre_pad[2 + i] for i in range(2)]
        expected = [onnx_window_count(padded[i], kernel[i], stride[i], pads[i], pads[2 + i], dilation[i], ceil)
                    for i in range(2)]
        if maximum:
            pads = tuple(p + q for p, q in zip(pads, pre_pad))
            recovered = _recover_ceil(size, kernel, stride, dilation, pads, pre_pad, expected) if not ceil else None
            if recovered is not None:
                pads, ceil = recovered, True
        else:
            pads, include = pre_pad, True
    else:
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


def _recover_ceil(size, kernel, stride, dilation, merged, pre_pad, expected):
    """The exporter's Pad(-inf, end overhang) + floor MaxPool: the original ceil_mode pads, if they fit."""
    if pre_pad[0] or pre_pad[1]:
        return None
    pads = (merged[0], merged[1], merged[2] - pre_pad[2], merged[3] - pre_pad[3])
    got = [pool_output_size(size[i], kernel[i], stride[i], pads[i], pads[2 + i], dilation[i], True) for i in range(2)]
    beyond = [overhang(size[i], got[i], kernel[i], stride[i], pads[i], pads[2 + i], dilation[i]) for i in range(2)]
    return pads if got == expected and beyond == [pre_pad[2], pre_pad[3]] else None


def _mul(imp, node):
    """Conv(ones, depthwise) -> Mul(1/divisor): the exporter's ceil_mode average no single ONNX ceil_mode fits."""
    source = next((n for n in node.input if imp.deferred.get(n, ("",))[0] == "sum_pool"), None)
    if source is None:
        binary("Mul")(imp, node)
        return
    d = imp.deferred.pop(source)[1]
    other = node.input[1] if node.input[0] == source else node.input[0]
    if other not in imp.consts or not _window_average(imp, node, d, imp.const(other, "the scale")):
        imp.add(d["conv"], "Conv2d", [d["x"]], d["attrs"], d["params"])     # a plain convolution after all
        binary("Mul")(imp, node)


def _window_average(imp, node, d, scale) -> bool:
    """Adds the AvgPool2d whose PyTorch divisors are ``scale``; False when none matches.

    The exporter writes these window sums for PyTorch pools, whose end pads plus overhang stay under the
    kernel; larger pads, or tap tables over SEARCH_TAPS, are left a convolution (correct, not recognised),
    so the search below costs at most 2·kh·kw small candidates."""
    size, (kh, kw), stride, conv_pads = imp.shape(d["x"])[2:], d["kernel"], d["stride"], d["pads"]
    if d["dilation"] != (1, 1) or not all(isinstance(s, int) for s in size):
        raise Unsupported("window sums with dilation or a symbolic spatial size")
    if conv_pads[2] >= kh or conv_pads[3] >= kw or scale.ndim != 4 or any(
            n * k > SEARCH_TAPS for n, k in zip(scale.shape[2:], (kh, kw))):
        return False
    top, left = conv_pads[0], conv_pads[1]
    # prefer PyTorch-style symmetric pads when several forms compute the same thing
    candidates = sorted(((include, bottom, right) for include in (True, False) for bottom in range(conv_pads[2] + 1)
                         for right in range(conv_pads[3] + 1)), key=lambda c: (c[1] != top) + (c[2] != left))
    for include, bottom, right in candidates:
        pads = (top, left, bottom, right)
        out = [pool_output_size(size[i], d["kernel"][i], stride[i], pads[i], pads[2 + i], 1, True) for i in range(2)]
        if (1, 1, *out) != scale.shape:
            continue
        beyond = [overhang(size[i], out[i], d["kernel"][i], stride[i], pads[i], pads[2 + i]) for i in range(2)]
        if (bottom + beyond[0], right + beyond[1]) != (conv_pads[2], conv_pads[3]):
            continue
        divisor = np.outer(*(average_pool_divisor(size[i], out[i], d["kernel"][i], stride[i], pads[i],
                                                  pads[2 + i], include) for i in range(2)))
        if np.any(divisor == 0):
            continue
        expected = (1.0 / divisor).astype(np.float32)[None, None]
        if np.array_equal(expected, scale):
            attrs = dict(kernel_size=(kh, kw), stride=stride, pads=pads, dilation=(1, 1), ceil_mode=True,
                         count_include_pad=include)
            imp.add(node, "AvgPool2d", [d["x"]], attrs)
            return True
    return False


POOL_HANDLERS = {
    "MaxPool": _pool,
    "AveragePool": _pool,
    "Pad": _pad,                          # merged into the pooling node that reads it when exact
    "Mul": _mul,                          # window sums * 1/divisor -> AvgPool2d; else Mul
}
