"""Convolutions as PyTorch defines them: Conv1d, Conv2d and Conv3d, weight (out, in/groups, k...), optional
bias, zero padding. One N-D base holds the arithmetic; each class fixes the number of spatial axes.

Padding is stored as 2·n numbers, the begins then the ends ((top, left, bottom, right) in 2-D, ONNX's order),
so that "same" with an even kernel and asymmetric pads from ONNX files fit the same attribute.
"""
from __future__ import annotations

import math

from ..autodiff.registry import gradient
from ..errors import ShapeError
from ..init import fan_in_uniform
from ..layer import Layer, require_activation, require_rank, require_static, require_window
from ..onnx.handler_tools import Unsupported
from ..onnx.mapping import exports, imports
from ..onnx.nd_attrs import ints_attr, window_pads
from ..shapes import TensorType, conv_output_size, ntuple
from .activations import activation_gradient


def conv_pads(padding, kernel_size, dilation, stride) -> tuple[int, ...]:
    """PyTorch's padding argument (int, n-tuple, "valid", "same", or 2·n numbers: begins then ends) as the
    begins then the ends of each spatial axis."""
    n = len(kernel_size)
    if padding == "valid":
        return (0,) * (2 * n)
    if padding == "same":
        if any(s != 1 for s in stride):
            raise ValueError("padding='same' is not supported for strided convolutions (as in PyTorch)")
        totals = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
        begin = [t // 2 for t in totals]
        return (*begin, *(t - b for t, b in zip(totals, begin)))
    if isinstance(padding, (tuple, list)) and len(padding) == 2 * n:
        pads = tuple(int(p) for p in padding)
    else:
        pads = ntuple(padding, n, "padding") * 2
    if min(pads) < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return pads


def check_padding_mode(name: str, padding_mode: str) -> None:
    if padding_mode != "zeros":
        raise ValueError(f"{name}: only padding_mode='zeros' is supported, got {padding_mode!r}")


class _ConvNd(Layer):
    """What Conv1d, Conv2d and Conv3d share; ``dims`` is the number of spatial axes."""
    dims: int = 2
    layout = "(N, C, H, W)"
    batch_independent = True
    prefix = "conv"
    linear = True
    weighted = True
    accepts_epilogue = True

    @classmethod
    def example(cls):
        return cls(3, 4, 3, padding=1), [(None, 3) + (6, 5, 4)[:cls.dims]]

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros"):
        name, n = type(self).__name__, self.dims
        kernel, stride = ntuple(kernel_size, n, "kernel_size"), ntuple(stride, n, "stride")
        dilation = ntuple(dilation, n, "dilation")
        check_padding_mode(name, padding_mode)
        if min(kernel + stride + dilation) < 1:
            raise ValueError(f"{name}: kernel_size, stride and dilation must be >= 1, got {kernel}, {stride}, {dilation}")
        if in_channels < 1 or out_channels < 1 or groups < 1:
            raise ValueError(f"{name}: in_channels, out_channels and groups must be >= 1")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must be divisible by groups ({groups})")
        super().__init__(in_channels=int(in_channels), out_channels=int(out_channels), kernel_size=kernel,
                         stride=stride, pads=conv_pads(padding, kernel, dilation, stride), dilation=dilation,
                         groups=int(groups), bias=bool(bias))

    @classmethod
    def param_shapes(cls, attrs):
        kernel = attrs["kernel_size"]               # read first: a missing attribute is named by its key
        shapes = {"weight": (attrs["out_channels"], attrs["in_channels"] // attrs["groups"], *kernel)}
        if attrs["bias"]:
            shapes["bias"] = (attrs["out_channels"],)
        return shapes

    @classmethod
    def init_params(cls, attrs):
        shapes = cls.param_shapes(attrs)
        fan_in = math.prod(shapes["weight"][1:])
        return {name: fan_in_uniform(shape, fan_in) for name, shape in shapes.items()}

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        n = cls.dims
        require_rank(inputs, 2 + n, cls.layout)
        require_window(attrs)
        require_activation(attrs)
        if any(len(attrs[key]) != n for key in ("kernel_size", "stride", "dilation")) or len(attrs["pads"]) != 2 * n:
            raise ShapeError(f"kernel_size, stride, dilation need {n} values and pads {2 * n}, got "
                             f"{attrs['kernel_size']}, {attrs['stride']}, {attrs['dilation']}, {attrs['pads']}")
        if x.shape[1] != attrs["in_channels"]:
            raise ShapeError(f"expects {attrs['in_channels']} input channels, got {x.shape[1]} from {x.describe()}")
        require_static(x, range(2, 2 + n), "spatial size")
        pads = attrs["pads"]
        sizes = [conv_output_size(x.shape[2 + i], attrs["kernel_size"][i], attrs["stride"][i],
                                  pads[i], pads[n + i], attrs["dilation"][i]) for i in range(n)]
        if min(sizes) < 1:
            raise ShapeError(f"input {x.describe()} is too small for kernel {attrs['kernel_size']} "
                             f"with dilation {attrs['dilation']} and padding {attrs['pads']}")
        return TensorType((x.shape[0], attrs["out_channels"], *sizes))

    @classmethod
    def summary(cls, attrs):
        stride = attrs["stride"]
        text = f"{attrs['in_channels']}→{attrs['out_channels']}, {'×'.join(map(str, attrs['kernel_size']))}"
        return text + (f", stride {stride[0]}" if any(s != 1 for s in stride) else "")

    @classmethod
    def macs(cls, attrs, inputs, output):
        return math.prod(output.shape[1:]) * (attrs["in_channels"] // attrs["groups"]) * math.prod(attrs["kernel_size"])


_ARGS = """
    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (number of filters).
        kernel_size: {k}, an int or a tuple of {n}.
        stride: an int or a tuple of {n} (default 1).
        padding: zeros added around the input: an int, a tuple of {n}, {n2} numbers (the begins, then the
            ends), "valid" (none) or "same" (output size = input size; stride 1 only). Default 0.
        dilation: spacing between kernel taps, an int or a tuple of {n} (default 1).
        groups: in_channels and out_channels split into this many groups convolved apart (in_channels for
            a depthwise convolution); both must be divisible by it. Default 1.
        bias: whether the layer has a bias (default True).
        padding_mode: "zeros" (the only mode supported).

    Parameters (PyTorch's layout, float32, PyTorch's default uniform initialisation):
        weight: (out_channels, in_channels / groups, {k}).
        bias: (out_channels,), when ``bias``.
    Set them with ``conv.weight = array`` (shape-checked) before adding the layer to a graph, or with
    ``graph.set_params(name, weight=...)`` after.
"""


class Conv1d(_ConvNd):
    __doc__ = """1-D convolution (cross-correlation) as ``torch.nn.Conv1d``: input (N, in_channels, L), output
    (N, out_channels, L') with L' = ⌊(L + pad_begin + pad_end − dilation·(k − 1) − 1) / stride⌋ + 1.
""" + _ARGS.format(k="k", n=1, n2=2)
    dims = 1
    layout = "(N, C, L)"


class Conv2d(_ConvNd):
    __doc__ = """2-D convolution (cross-correlation) as ``torch.nn.Conv2d``: input (N, in_channels, H, W), output
    (N, out_channels, H', W') with H' = ⌊(H + pad_top + pad_bottom − dilation·(kh − 1) − 1) / stride⌋ + 1.
""" + _ARGS.format(k="kh, kw", n=2, n2=4)
    dims = 2


class Conv3d(_ConvNd):
    __doc__ = """3-D convolution (cross-correlation) as ``torch.nn.Conv3d``: input (N, in_channels, D, H, W),
    output (N, out_channels, D', H', W'), each axis as in Conv1d.
""" + _ARGS.format(k="kd, kh, kw", n=3, n2=6)
    dims = 3
    layout = "(N, C, D, H, W)"


CONV_BY_RANK = {1: "Conv1d", 2: "Conv2d", 3: "Conv3d"}     # spatial axes -> op


# --- ONNX export -----------------------------------------------------------------------------------------------
@exports("Conv1d", "Conv2d", "Conv3d")
def _conv_to_onnx(e, n):
    a = n.attrs
    inputs = [n.inputs[0], e.param(n, "weight")] + ([e.param(n, "bias")] if a["bias"] else [])
    e.emit(n, "Conv", inputs, kernel_shape=list(a["kernel_size"]), strides=list(a["stride"]),
           pads=list(a["pads"]), dilations=list(a["dilation"]), group=a["groups"])


# --- ONNX import -----------------------------------------------------------------------------------------------
# How the importer reads the ONNX ops that become this family's layers (cnngraph/onnx/mapping.py); one
# ONNX node, one node of ours. The weight's rank picks Conv1d, Conv2d or Conv3d.


@imports("Conv")
def _conv(imp, node):
    a = imp.attrs(node)
    x = imp.value(node.input[0])
    weight = imp.const(node.input[1], "the weight")
    dims = weight.ndim - 2
    if dims not in CONV_BY_RANK or len(imp.shape(x)) != weight.ndim:
        raise Unsupported(f"a weight of rank {weight.ndim} on an input of rank {len(imp.shape(x))} "
                          "(1-D, 2-D and 3-D convolutions are supported)")
    bias = imp.const(node.input[2], "the bias") if len(node.input) > 2 and node.input[2] else None
    groups = int(a.get("group", 1))
    kernel = tuple(int(k) for k in weight.shape[2:])
    if "kernel_shape" in a and tuple(a["kernel_shape"]) != kernel:
        raise Unsupported(f"kernel_shape {a['kernel_shape']} differs from the weight's {kernel}")
    strides, dilations = ints_attr(a.get("strides"), dims, "strides"), ints_attr(a.get("dilations"), dims, "dilations")
    attrs = dict(in_channels=int(weight.shape[1]) * groups, out_channels=int(weight.shape[0]), kernel_size=kernel,
                 stride=strides, pads=window_pads(imp, x, kernel, strides, dilations, a), dilation=dilations,
                 groups=groups, bias=bias is not None)
    params = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
    imp.add(node, CONV_BY_RANK[dims], [x], attrs, params)


# --- gradients -------------------------------------------------------------------------------------------------
# y = conv(x, W) + b  =>  ∂x = conv_transpose(∂y, W) (Conv2dGradInput), ∂W = Σ_n ∂y ⋆ x (Conv2dGradWeight),
# ∂b = Σ_{n,h,w} ∂y. Both are GEMMs in the NumPy backend (columns of x or of Wᵀ·∂y), like the forward pass.
class Conv2dGradInput(Layer):
    """∂L/∂x of a Conv2d from ∂L/∂y (training graphs only): input dy (N, out_channels, H', W'), output
    (N, in_channels, H, W), H and W given by ``input_size`` (a strided convolution's input size is not
    determined by its output's). Input pixels no window reads get 0.

    Args:
        attrs: the Conv2d's attributes (in_channels, out_channels, kernel_size, stride, pads, dilation,
            groups) and input_size, the forward input's (H, W).
    Parameters: weight, the Conv2d's (out_channels, in_channels / groups, kh, kw).
    """
    prefix = "dconv_x"
    training_only = True

    @classmethod
    def example(cls):
        return cls(**dict(Conv2d(4, 6, 3, stride=2, padding=1, groups=2).attrs, input_size=(5, 6))), [(None, 6, 3, 3)]

    def __init__(self, **attrs):
        super().__init__(**{k: tuple(v) if isinstance(v, list) else v for k, v in attrs.items() if k != "activation"})

    @classmethod
    def param_shapes(cls, attrs):
        kh, kw = attrs["kernel_size"]
        return {"weight": (attrs["out_channels"], attrs["in_channels"] // attrs["groups"], kh, kw)}

    @classmethod
    def init_params(cls, attrs):
        return Conv2d.init_params(dict(attrs, bias=False))

    @classmethod
    def infer(cls, attrs, inputs):
        dy, = inputs
        h, w = attrs["input_size"]
        forward = Conv2d.infer(attrs, [type(dy)(dy.name, TensorType((dy.shape[0], attrs["in_channels"], h, w)))])
        if forward.shape[1:] != dy.shape[1:]:
            raise ShapeError(f"dy {dy.describe()} is not the output {forward} of this convolution of {(h, w)}")
        return TensorType((dy.shape[0], attrs["in_channels"], h, w))


class Conv2dGradWeight(Layer):
    """∂L/∂W of a Conv2d from its input x and ∂L/∂y, summed over the batch (training graphs only): inputs x
    (N, in_channels, H, W) and dy (N, out_channels, H', W'), output the weight's gradient as a matrix
    (out_channels, in_channels / groups · kh · kw), the GEMM's own result (a Reshape gives the weight's shape;
    a 4-D result would be stored channels-first and transposed twice).

    Args:
        attrs: the Conv2d's attributes (in_channels, out_channels, kernel_size, stride, pads, dilation, groups).
    """
    prefix = "dconv_w"
    arity = (2, 2)
    training_only = True

    @classmethod
    def example(cls):
        return cls(**Conv2d(4, 6, 3, stride=2, padding=1, groups=2).attrs), [(None, 4, 5, 6), (None, 6, 3, 3)]

    def __init__(self, **attrs):
        super().__init__(**{k: v for k, v in attrs.items() if k not in ("activation", "bias", "input_size")})

    @classmethod
    def infer(cls, attrs, inputs):
        x, dy = inputs
        forward = Conv2d.infer(attrs, [x])
        if forward.shape[1:] != dy.shape[1:] or forward.shape[0] != dy.shape[0]:
            raise ShapeError(f"dy {dy.describe()} is not the output {forward} of this convolution of {x.describe()}")
        kh, kw = attrs["kernel_size"]
        return TensorType((attrs["out_channels"], attrs["in_channels"] // attrs["groups"] * kh * kw))

    @classmethod
    def macs(cls, attrs, inputs, output):
        return Conv2d.macs(attrs, inputs[:1], inputs[1].type)


def _window_attrs(attrs) -> dict:
    keys = ("in_channels", "out_channels", "kernel_size", "stride", "pads", "dilation", "groups")
    return {k: attrs[k] for k in keys}


@gradient("Conv2d")
def _conv_gradient(b, node, dy):
    dy = activation_gradient(b, node, dy)
    x = node.inputs[0]
    grads = {0: b.add(node, "x", "Conv2dGradInput", [dy], {"weight": node.params["weight"]},
                      **_window_attrs(node.attrs), input_size=tuple(b.shape(x)[2:])),
             "weight": b.add(node, "weight", "Reshape", [b.add(node, "weight.matrix", "Conv2dGradWeight", [x, dy],
                                                                **_window_attrs(node.attrs))],
                             shape=node.params["weight"].shape)}
    if node.attrs["bias"]:
        grads["bias"] = b.add(node, "bias", "SumExcept", [dy], axis=1)
    return grads


# Conv1d and Conv3d: ∂x is the transposed convolution of ∂y by the same weight (ConvTranspose's weight layout
# (in, out/groups, k...) read with in = the convolution's out channels), its output_padding the input rows no
# window reached; ∂W by ConvNdGradWeight (nd_gradients.py); ∂b = Σ ∂y.
from . import nd_gradients  # noqa: E402  (ConvNdGradWeight)


def transposed_of(attrs, input_size, out_size) -> dict:
    """A ConvTranspose's attributes mapping a convolution's output of ``out_size`` back onto ``input_size``."""
    n = len(attrs["kernel_size"])
    reach = [(o - 1) * s - attrs["pads"][i] - attrs["pads"][n + i] + d * (k - 1) + 1 for i, (o, s, d, k) in
             enumerate(zip(out_size, attrs["stride"], attrs["dilation"], attrs["kernel_size"]))]
    return dict(in_channels=attrs["out_channels"], out_channels=attrs["in_channels"], kernel_size=attrs["kernel_size"],
                stride=attrs["stride"], pads=attrs["pads"], dilation=attrs["dilation"], groups=attrs["groups"],
                output_padding=tuple(size - r for size, r in zip(input_size, reach)), bias=False)


@gradient("Conv1d", "Conv3d")
def _conv_nd_gradient(b, node, dy):
    dy = activation_gradient(b, node, dy)
    x = node.inputs[0]
    n = len(node.attrs["kernel_size"])
    attrs = transposed_of(node.attrs, b.shape(x)[2:], b.shape(dy)[2:])
    grads = {0: b.add(node, "x", f"ConvTranspose{n}d", [dy], {"weight": node.params["weight"]}, **attrs),
             "weight": b.add(node, "weight", "ConvNdGradWeight", [x, dy], **nd_gradients.conv_window_attrs(node.attrs))}
    if node.attrs["bias"]:
        grads["bias"] = b.add(node, "bias", "SumExcept", [dy], axis=1)
    return grads
