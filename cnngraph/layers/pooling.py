"""Pooling layers with PyTorch's output sizes, ceil_mode and count_include_pad included.

Average pooling is linear (a fixed weighted sum), max pooling is not: that difference decides which
chains of layers can be folded into one.
"""
from __future__ import annotations

import functools

import numpy as np

from ..autodiff.registry import gradient
from ..errors import ExportError, ShapeError
from ..layer import Layer, require_rank, require_static, require_window
from ..onnx.handler_tools import Unsupported
from ..onnx.mapping import exports, imports
from ..onnx.nd_attrs import ints_attr, window_pads
from ..onnx.pool_windows import end_pads, pool_axes, rounding
from ..onnx.shared import overhang
from ..shapes import TensorType, ntuple, pool_output_size

LAYOUTS = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}


def _pool_attrs(cls_name, kernel_size, stride, padding, dilation, n: int = 2):
    kernel = ntuple(kernel_size, n, "kernel_size")
    stride = kernel if stride is None else ntuple(stride, n, "stride")
    pad = ntuple(padding, n, "padding")
    dilation = ntuple(dilation, n, "dilation")
    if min(kernel + stride + dilation) < 1 or min(pad) < 0:
        raise ValueError(f"{cls_name}: kernel_size, stride, dilation must be >= 1 and padding >= 0")
    for p, k, d in zip(pad, kernel, dilation):
        if p > ((k - 1) * d + 1) // 2:
            raise ValueError(f"{cls_name}: padding {padding} must be at most half of the kernel size "
                             f"{kernel_size} (as in PyTorch)")
    return dict(kernel_size=kernel, stride=stride, pads=pad + pad, dilation=dilation)


def infer_pool(attrs, inputs):
    x, = inputs
    n = len(attrs["kernel_size"])
    require_rank(inputs, n + 2, LAYOUTS.get(n, ""))
    require_window(attrs)
    require_static(x, range(2, 2 + n), "spatial size")
    pads = attrs["pads"]
    sizes = [pool_output_size(x.shape[2 + i], attrs["kernel_size"][i], attrs["stride"][i], pads[i], pads[n + i],
                              attrs["dilation"][i], attrs["ceil_mode"]) for i in range(n)]
    if min(sizes) < 1:
        raise ShapeError(f"input {x.describe()} is too small for kernel {attrs['kernel_size']} "
                         f"with padding {attrs['pads']}")
    return TensorType((*x.shape[:2], *sizes))


def _pool_summary(attrs) -> str:
    return f"{'×'.join(map(str, attrs['kernel_size']))}, stride {attrs['stride'][0]}"


def _pool_macs(attrs, output):
    return int(np.prod(output.shape[1:])) * int(np.prod(attrs["kernel_size"]))


class MaxPool2d(Layer):
    """Maximum over sliding windows, as ``torch.nn.MaxPool2d``: input (N, C, H, W), output (N, C, H', W');
    padded positions never win (they count as −∞).

    Args:
        kernel_size: window height and width, an int or a pair.
        stride: an int or a pair; default (None) is kernel_size.
        padding: an int or a pair, at most half the window (as in PyTorch); default 0.
        dilation: spacing between window taps, an int or a pair (default 1).
        ceil_mode: round the output size up instead of down (a window that would start inside the right
            padding is dropped, as in PyTorch); default False.
    """
    batch_independent = True
    prefix = "pool"

    @classmethod
    def example(cls):
        return cls(2), [(None, 3, 4, 6)]

    spatial_dims = 2

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1, ceil_mode: bool = False):
        super().__init__(**_pool_attrs(type(self).__name__, kernel_size, stride, padding, dilation, self.spatial_dims),
                         ceil_mode=bool(ceil_mode))

    infer = classmethod(lambda cls, attrs, inputs: infer_pool(attrs, inputs))
    summary = classmethod(lambda cls, attrs: _pool_summary(attrs))


class AvgPool2d(Layer):
    """Mean over sliding windows, as ``torch.nn.AvgPool2d``: input (N, C, H, W), output (N, C, H', W').

    Args:
        kernel_size: window height and width, an int or a pair.
        stride: an int or a pair; default (None) is kernel_size.
        padding: zero padding, an int or a pair, at most half the window; default 0.
        ceil_mode: round the output size up instead of down; default False.
        count_include_pad: divide by the whole window, padding included (True, PyTorch's default) or by
            the taps inside the input only (False).
    """
    batch_independent = True
    prefix = "pool"
    linear = True

    @classmethod
    def example(cls):
        return cls(2), [(None, 3, 4, 6)]

    spatial_dims = 2

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, ceil_mode: bool = False, count_include_pad: bool = True):
        super().__init__(**_pool_attrs(type(self).__name__, kernel_size, stride, padding, 1, self.spatial_dims),
                         ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad))

    infer = classmethod(lambda cls, attrs, inputs: infer_pool(attrs, inputs))
    summary = classmethod(lambda cls, attrs: _pool_summary(attrs))
    macs = classmethod(lambda cls, attrs, inputs, output: _pool_macs(attrs, output))


class MaxPool1d(MaxPool2d):
    """Maximum over sliding windows, as ``torch.nn.MaxPool1d``: input (N, C, L), output (N, C, L'); the
    arguments of MaxPool2d (kernel_size, stride = kernel_size, padding = 0, dilation = 1, ceil_mode = False),
    each an int or a 1-tuple."""
    spatial_dims = 1

    @classmethod
    def example(cls):
        return cls(3, 2, 1), [(None, 3, 8)]


class MaxPool3d(MaxPool2d):
    """Maximum over sliding windows, as ``torch.nn.MaxPool3d``: input (N, C, D, H, W), output (N, C, D', H', W');
    the arguments of MaxPool2d (kernel_size, stride = kernel_size, padding = 0, dilation = 1, ceil_mode = False),
    each an int or a triple."""
    spatial_dims = 3

    @classmethod
    def example(cls):
        return cls(2), [(None, 2, 4, 4, 6)]


class AvgPool1d(AvgPool2d):
    """Mean over sliding windows, as ``torch.nn.AvgPool1d``: input (N, C, L), output (N, C, L'); the arguments
    of AvgPool2d (kernel_size, stride = kernel_size, padding = 0, ceil_mode = False, count_include_pad = True),
    each size an int or a 1-tuple."""
    spatial_dims = 1

    @classmethod
    def example(cls):
        return cls(3, 2, 1), [(None, 3, 8)]


class AvgPool3d(AvgPool2d):
    """Mean over sliding windows, as ``torch.nn.AvgPool3d``: input (N, C, D, H, W), output (N, C, D', H', W');
    the arguments of AvgPool2d (kernel_size, stride = kernel_size, padding = 0, ceil_mode = False,
    count_include_pad = True), each size an int or a triple."""
    spatial_dims = 3

    @classmethod
    def example(cls):
        return cls(2), [(None, 2, 4, 4, 6)]


POOLS = {(maximum, n): f"{'Max' if maximum else 'Avg'}Pool{n}d" for maximum in (True, False) for n in (1, 2, 3)}


class GlobalAvgPool2d(Layer):
    """Mean over the spatial axes, keeping them as 1×1 (PyTorch's AdaptiveAvgPool2d(1)): input (N, C, H, W),
    output (N, C, 1, 1). No arguments."""
    batch_independent = True
    prefix = "gap"
    linear = True

    def __init__(self):
        super().__init__()

    @classmethod
    def infer(cls, attrs, inputs):
        require_rank(inputs, 4, "(N, C, H, W)")
        x, = inputs
        return TensorType((x.shape[0], x.shape[1], 1, 1))

    @classmethod
    def macs(cls, attrs, inputs, output):
        x, = inputs
        return 0 if not all(isinstance(d, int) for d in x.shape[1:]) else x.shape[1] * x.shape[2] * x.shape[3]


# --- ONNX export -----------------------------------------------------------------------------------------------
def _onnx_pool_attrs(n, ceil_mode: int) -> dict:
    a = n.attrs
    return dict(kernel_shape=list(a["kernel_size"]), strides=list(a["stride"]), pads=list(a["pads"]),
                ceil_mode=ceil_mode)


def _explicit_pads(pads) -> list[int]:
    """Pad's pads for (N, C, *spatial) from a pool's begins then ends of the spatial axes."""
    n = len(pads) // 2
    return [0, 0, *pads[:n], 0, 0, *pads[n:]]


@exports("MaxPool1d", "MaxPool2d", "MaxPool3d")
def _maxpool_to_onnx(e, n):
    axes, x = pool_axes(e.graph, n), n.inputs[0]
    form = rounding(axes)
    if form == "mixed":
        # extend the end with -inf explicitly, then floor (onnxruntime refuses pads >= kernel); the implicit
        # padding is -inf too, so that it now lies beyond the extension changes no maximum
        x = e.helper_node(n, "Pad", [x, e.int64(n, "pads", end_pads(axes)),
                                     e.initializer(f"{n.name}.pad_value", np.array(-np.inf, np.float32))])
    e.emit(n, "MaxPool", [x], dilations=list(n.attrs["dilation"]), **_onnx_pool_attrs(n, int(form == "ceil")))


@exports("AvgPool1d", "AvgPool2d", "AvgPool3d")
def _avgpool_to_onnx(e, n):
    """AveragePool; ``dilations`` exists from opset 19 only (written when not 1, refused below 19)."""
    a, axes, x = n.attrs, pool_axes(e.graph, n), n.inputs[0]
    dilation = tuple(a.get("dilation", (1,) * len(axes)))
    form = rounding(axes)
    if form == "mixed":
        _avgpool_as_sum(e, n, axes)
        return
    attrs = dict(_onnx_pool_attrs(n, int(form == "ceil")), count_include_pad=int(a["count_include_pad"]))
    if any(d != 1 for d in dilation):
        if e.opset < 19:
            raise ExportError(f"{n.label()}: AveragePool has dilations only from opset 19, "
                              f"got dilation {dilation} at opset {e.opset}")
        attrs["dilations"] = list(dilation)
    if form == "ceil" and a["count_include_pad"] and any(axis.overhang for axis in axes):
        # The last window runs past the padded input: PyTorch counts the padding in the divisor but not that
        # overhang, and runtimes disagree on it (pytorch #183528, onnxruntime PR #29629). Zero padding made
        # explicit, with count_include_pad=0, says the same in a form every runtime reads alike.
        if any(a["pads"]):
            x = e.helper_node(n, "Pad", [x, e.int64(n, "pads", _explicit_pads(a["pads"]))])
        attrs.update(pads=[0] * len(a["pads"]), count_include_pad=0)
    e.emit(n, "AveragePool", [x], **attrs)


def _avgpool_as_sum(e, n, axes):
    """Window sums (a depthwise convolution with ones, zero padding extended to floor rounding) times PyTorch's
    reciprocal divisors: the form for sizes no ceil_mode expresses."""
    a, channels = n.attrs, n.type.shape[1]
    if not isinstance(channels, int):
        raise ExportError(f"{n.label()}: needs a static channel count to export this ceil_mode pooling")
    kernel, dims = a["kernel_size"], len(axes)
    ones = np.ones((channels, 1, *kernel), np.float32)
    ends = [end + axis.overhang for end, axis in zip(a["pads"][dims:], axes)]
    sums = e.helper_node(n, "Conv", [n.inputs[0], e.initializer(f"{n.name}.ones", ones)], group=channels,
                         kernel_shape=list(kernel), strides=list(a["stride"]), dilations=[ax.dilation for ax in axes],
                         pads=[*a["pads"][:dims], *ends])
    divisor = functools.reduce(np.multiply.outer, [axis.divisor(a["count_include_pad"]) for axis in axes])
    scale = (1.0 / divisor).astype(np.float32)[None, None]
    e.emit(n, "Mul", [sums, e.initializer(f"{n.name}.scale", scale)])


@exports("GlobalAvgPool2d")
def _global_avgpool_to_onnx(e, n):
    e.emit(n, "GlobalAveragePool", n.inputs)


# --- ONNX import -----------------------------------------------------------------------------------------------
# How the importer reads the ONNX ops that become this family's layers (cnngraph/onnx/mapping.py); one
# ONNX node, one node of ours.


@imports("MaxPool", "AveragePool")
def _pool(imp, node):
    a = imp.attrs(node)
    maximum = node.op_type == "MaxPool"
    x = imp.value(node.input[0])
    dims = len(imp.shape(x)) - 2
    if dims not in (1, 2, 3):
        raise Unsupported(f"{dims}-D pooling (1-D to 3-D are supported)")
    if maximum and int(a.get("storage_order", 0)):
        raise Unsupported("storage_order = 1")
    kernel = ints_attr(a["kernel_shape"], dims, "kernel_shape")
    stride = ints_attr(a.get("strides"), dims, "strides")
    dilation = ints_attr(a.get("dilations"), dims, "dilations")
    pads = window_pads(imp, x, kernel, stride, dilation, a)
    ceil = bool(a.get("ceil_mode", 0))
    include = bool(a.get("count_include_pad", 0))
    size = imp.shape(x)[2:]
    if not all(isinstance(d, int) for d in size):
        raise Unsupported(f"a symbolic spatial size {list(size)}")
    # ONNX's sizes are PyTorch's: "sliding windows that would start in the right padded region are ignored"
    # (the MaxPool/AveragePool spec, its node tests *_ceil_output_size_reduce_by_one, onnxruntime), although
    # onnx's shape inference still counts them; a window wider than the padded input still counts, rounded up.
    sizes = [pool_output_size(size[i], kernel[i], stride[i], pads[i], pads[dims + i], dilation[i], ceil)
             for i in range(dims)]
    if not maximum and ceil and include and any(
            overhang(size[i], sizes[i], kernel[i], stride[i], pads[i], pads[dims + i], dilation[i])
            for i in range(dims)):
        raise Unsupported("a ceil_mode average counting padding whose last window overhangs it "
                          "(runtimes disagree on its divisor, pytorch #183528)")
    attrs = dict(kernel_size=kernel, stride=stride, pads=pads, dilation=dilation, ceil_mode=ceil)
    if not maximum:
        attrs["count_include_pad"] = include
    imp.add(node, POOLS[maximum, dims], [x], attrs)


@imports("GlobalAveragePool")
def _global_avgpool(imp, node):
    imp.add(node, "GlobalAvgPool2d", [imp.value(node.input[0])])


# --- gradients -------------------------------------------------------------------------------------------------
# Max pooling routes ∂y to the first maximum of each window (PyTorch's choice among ties); average pooling
# spreads ∂y/divisor over the window's taps; the global average spreads ∂y/(H·W) over the whole map.
from . import pool_gradients  # noqa: E402,F401  (MaxPool2dGrad, AvgPool2dGrad, GlobalAvgPool2dGrad)


@gradient("MaxPool2d")
def _maxpool_gradient(b, node, dy):
    return {0: b.add(node, "x", "MaxPool2dGrad", [node.inputs[0], node.name, dy], **node.attrs)}


@gradient("AvgPool2d")
def _avgpool_gradient(b, node, dy):
    return {0: b.add(node, "x", "AvgPool2dGrad", [dy], **node.attrs, input_size=tuple(b.shape(node.inputs[0])[2:]))}


@gradient("GlobalAvgPool2d")
def _global_avgpool_gradient(b, node, dy):
    return {0: b.add(node, "x", "GlobalAvgPool2dGrad", [dy], input_size=tuple(b.shape(node.inputs[0])[2:]))}


# 1-D and 3-D pools: the same rules, by MaxPoolNdGrad and AvgPoolNdGrad (nd_gradients.py), any rank.
from . import nd_gradients  # noqa: E402,F401  (MaxPoolNdGrad, AvgPoolNdGrad)


@gradient("MaxPool1d", "MaxPool3d")
def _maxpool_nd_gradient(b, node, dy):
    return {0: b.add(node, "x", "MaxPoolNdGrad", [node.inputs[0], node.name, dy], **node.attrs)}


@gradient("AvgPool1d", "AvgPool3d")
def _avgpool_nd_gradient(b, node, dy):
    return {0: b.add(node, "x", "AvgPoolNdGrad", [dy], **node.attrs, input_size=tuple(b.shape(node.inputs[0])[2:]))}
