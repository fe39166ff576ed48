"""Adaptive pooling, as PyTorch's AdaptiveAvgPool1d/2d/3d and AdaptiveMaxPool1d/2d/3d: the output size is
given, the windows follow from the input size.

Along an axis of size n pooled to m, window i covers [floor(i·n/m), ceil((i+1)·n/m)): windows of possibly
different lengths that may overlap by one. When m divides n they are the windows of a plain pool with kernel
= stride = n/m (m = 1: a global pool), which is how PyTorch's exporters write them and how they are exported
here. ONNX has no node for other sizes; they are exported exactly, axis by axis, as the taps of the longest
window gathered at clamped positions (Gather), combined by Max, or weighted by 1/length and added (Sum).
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..layer import Layer, require_rank, require_static
from ..onnx.mapping import emit_as, exports, imports
from ..shapes import TensorType

LAYOUTS = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}


def adaptive_windows(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's (start, end) of each of the ``out`` windows over ``size`` cells."""
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def tap_indices(size: int, out: int) -> list[np.ndarray]:
    """For tap t of the longest window: the cell each window reads, start + min(t, length − 1). A window shorter
    than t + 1 reads its last cell again (harmless for a maximum; weighted 0 in an average)."""
    start, end = adaptive_windows(size, out)
    length = end - start
    return [start + np.minimum(t, length - 1) for t in range(int(length.max()))]


def _output_size(value, n: int) -> tuple:
    values = (value,) * n if value is None or isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != n or any(v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))
                                                  or v < 1) for v in values):
        raise ValueError(f"output_size must be a positive int, None or a tuple of {n} of them, got {value!r}")
    return tuple(None if v is None else int(v) for v in values)


class _AdaptivePool(Layer):
    """Shared by the six adaptive pools; ``spatial_dims`` axes, ``maximum`` or average."""
    batch_independent = True
    prefix = "pool"
    op = "_AdaptivePool"
    spatial_dims = 2
    maximum = False
    exported_as = ("AvgPool2d", "GlobalAvgPool2d")   # what a uniform one reads back as from ONNX

    @classmethod
    def example(cls):
        return cls((2, 2, 3)[:cls.spatial_dims]), [(None, 2, *(4, 6, 6)[:cls.spatial_dims])]

    def __init__(self, output_size):
        super().__init__(output_size=_output_size(output_size, self.spatial_dims))

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        n = cls.spatial_dims
        require_rank(inputs, n + 2, LAYOUTS[n])
        require_static(x, range(2, 2 + n), "spatial size")
        if min(x.shape[2:]) < 1:
            raise ShapeError(f"cannot pool the empty input {x.describe()}")
        return TensorType((*x.shape[:2], *(d if o is None else o for d, o in zip(x.shape[2:], attrs["output_size"]))))

    @classmethod
    def macs(cls, attrs, inputs, output):
        x, = inputs
        if not all(isinstance(d, int) for d in output.shape[1:]):
            return 0
        windows = [int((e - s).max()) for s, e in (adaptive_windows(i, o) for i, o in zip(x.shape[2:], output.shape[2:]))]
        return int(np.prod(output.shape[1:])) * int(np.prod(windows))

    @classmethod
    def summary(cls, attrs):
        return "→" + "×".join("·" if o is None else str(o) for o in attrs["output_size"])


class AdaptiveAvgPool2d(_AdaptivePool):
    """Mean over adaptive windows, as ``torch.nn.AdaptiveAvgPool2d``: input (N, C, H, W), output
    (N, C, H', W') = output_size; window i along an axis of size n covers [floor(i·n/H'), ceil((i+1)·n/H')).

    Args:
        output_size: (H', W'), or an int for both; None keeps that axis's input size.
    """
    op = "AdaptiveAvgPool2d"
    linear = True


class AdaptiveAvgPool1d(_AdaptivePool):
    """Mean over adaptive windows, as ``torch.nn.AdaptiveAvgPool1d``: input (N, C, L), output (N, C, L').

    Args:
        output_size: L' (an int).
    """
    op = "AdaptiveAvgPool1d"
    linear = True
    spatial_dims = 1
    exported_as = ("AvgPool1d",)


class AdaptiveAvgPool3d(_AdaptivePool):
    """Mean over adaptive windows, as ``torch.nn.AdaptiveAvgPool3d``: input (N, C, D, H, W), output
    (N, C, D', H', W').

    Args:
        output_size: (D', H', W'), or an int for all three; None keeps that axis's input size.
    """
    op = "AdaptiveAvgPool3d"
    linear = True
    spatial_dims = 3
    exported_as = ("AvgPool3d",)


class AdaptiveMaxPool2d(_AdaptivePool):
    """Maximum over adaptive windows, as ``torch.nn.AdaptiveMaxPool2d`` (without return_indices): input
    (N, C, H, W), output (N, C, H', W') = output_size; windows as AdaptiveAvgPool2d's.

    Args:
        output_size: (H', W'), or an int for both; None keeps that axis's input size.
    """
    op = "AdaptiveMaxPool2d"
    maximum = True
    exported_as = ("MaxPool2d", "GlobalMaxPool2d")


class AdaptiveMaxPool1d(_AdaptivePool):
    """Maximum over adaptive windows, as ``torch.nn.AdaptiveMaxPool1d`` (without return_indices): input
    (N, C, L), output (N, C, L').

    Args:
        output_size: L' (an int).
    """
    op = "AdaptiveMaxPool1d"
    maximum = True
    spatial_dims = 1
    exported_as = ("MaxPool1d",)


class AdaptiveMaxPool3d(_AdaptivePool):
    """Maximum over adaptive windows, as ``torch.nn.AdaptiveMaxPool3d`` (without return_indices): input
    (N, C, D, H, W), output (N, C, D', H', W').

    Args:
        output_size: (D', H', W'), or an int for all three; None keeps that axis's input size.
    """
    op = "AdaptiveMaxPool3d"
    maximum = True
    spatial_dims = 3
    exported_as = ("MaxPool3d",)


# --- ONNX export -----------------------------------------------------------------------------------------------
def _export_axis(e, n, x: str, axis: int, size: int, out: int, last: bool) -> str:
    """One axis pooled exactly: Max of the gathered taps, or Sum of the taps weighted by 1/length; the ``last``
    axis's final node is the node's own."""
    maximum = n.layer.maximum
    start, end = adaptive_windows(size, out)
    indices = tap_indices(size, out)
    taps = []
    for t, index in enumerate(indices):
        final = last and len(indices) == 1 and maximum
        tap = (e.emit if final else e.helper_node)(n, "Gather", [x, e.int64(n, f"axis{axis}.tap{t}", index)], axis=axis)
        if not maximum:
            shape = (out,) + (1,) * (len(n.type.shape) - 1 - axis)
            weight = ((t < end - start) / (end - start)).astype(np.float32).reshape(shape)
            final = last and len(indices) == 1
            tap = (e.emit if final else e.helper_node)(
                n, "Mul", [tap, e.initializer(f"{n.name}.axis{axis}.weight{t}", weight)])
        taps.append(tap)
    if len(taps) == 1:
        return taps[0]
    return (e.emit if last else e.helper_node)(n, "Max" if maximum else "Sum", taps)


@exports(*(cls.op for cls in (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d, AdaptiveMaxPool1d,
                              AdaptiveMaxPool2d, AdaptiveMaxPool3d)))
def _adaptive_to_onnx(e, n):
    """A global pool (2-D), a plain pool (kernel = stride = in/out) when the sizes divide, else the exact taps."""
    sizes, outs = e.graph.type_of(n.inputs[0]).shape[2:], n.type.shape[2:]
    kind = "Max" if n.layer.maximum else "Average"
    if len(outs) == 2 and all(o == 1 for o in outs):
        e.emit(n, f"Global{kind}Pool", n.inputs)
    elif all(s % o == 0 for s, o in zip(sizes, outs)):
        kernel = [s // o for s, o in zip(sizes, outs)]
        e.emit(n, f"{kind}Pool", n.inputs, kernel_shape=kernel, strides=kernel)
    else:
        value = n.inputs[0]
        axes = [axis for axis, (size, out) in enumerate(zip(sizes, outs), start=2) if size != out]
        for axis in axes:
            value = _export_axis(e, n, value, axis, sizes[axis - 2], outs[axis - 2], axis == axes[-1])


# --- gradients -------------------------------------------------------------------------------------------------
# Average: ∂y through the transpose of each axis's averaging; maximum: ∂y to each window's first maximum
# (AdaptiveAvgPoolGrad, AdaptiveMaxPoolGrad in nd_gradients.py).
from ..autodiff.registry import gradient  # noqa: E402


@gradient("AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d")
def _adaptive_avg_gradient(b, node, dy):
    return {0: b.add(node, "x", "AdaptiveAvgPoolGrad", [dy], input_size=tuple(b.shape(node.inputs[0])[2:]))}


@gradient("AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d")
def _adaptive_max_gradient(b, node, dy):
    return {0: b.add(node, "x", "AdaptiveMaxPoolGrad", [node.inputs[0], node.name, dy])}


# --- GlobalMaxPool2d: AdaptiveMaxPool2d(1), as ONNX's GlobalMaxPool -------------------------------------------
class GlobalMaxPool2d(Layer):
    """Maximum over H and W, keeping them as 1 (PyTorch's AdaptiveMaxPool2d(1), ONNX's GlobalMaxPool): input
    (N, C, H, W), output (N, C, 1, 1). No arguments."""
    batch_independent = True
    prefix = "gmaxpool"

    def __init__(self):
        super().__init__()

    @classmethod
    def infer(cls, attrs, inputs):
        require_rank(inputs, 4, "(N, C, H, W)")
        return TensorType((*inputs[0].shape[:2], 1, 1))


exports("GlobalMaxPool2d")(emit_as("GlobalMaxPool"))


@imports("GlobalMaxPool")
def _global_maxpool(imp, node):
    imp.add(node, "GlobalMaxPool2d", [imp.value(node.input[0])])


@gradient("GlobalMaxPool2d")
def _global_maxpool_gradient(b, node, dy):
    """A max pool whose one window is the whole map: MaxPool2dGrad sends ∂y to the first maximum."""
    h, w = b.shape(node.inputs[0])[2:]
    return {0: b.add(node, "x", "MaxPool2dGrad", [node.inputs[0], node.name, dy], kernel_size=(h, w), stride=(h, w),
                     pads=(0, 0, 0, 0), dilation=(1, 1), ceil_mode=False)}
