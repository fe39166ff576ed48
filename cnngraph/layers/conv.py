"""Conv2d, as PyTorch defines it: weight (out, in/groups, kh, kw), optional bias, zero padding.

Padding is stored as four numbers (top, left, bottom, right) so that "same" with an even kernel and
asymmetric pads from ONNX files fit the same attribute.
"""
from __future__ import annotations

from ..autodiff.registry import gradient
from ..errors import ShapeError
from ..init import fan_in_uniform
from ..layer import Layer, pair, require_activation, require_rank, require_static, require_window
from ..onnx.handler_tools import Unsupported, pair_attr, spatial
from ..onnx.mapping import exports, imports
from ..shapes import TensorType, conv_output_size
from .activations import activation_gradient


def conv_pads(padding, kernel_size, dilation, stride) -> tuple[int, int, int, int]:
    """PyTorch's padding argument (int, pair, "valid", "same") as (top, left, bottom, right)."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        if stride != (1, 1):
            raise ValueError("padding='same' is not supported for strided convolutions (as in PyTorch)")
        totals = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
        begin = [t // 2 for t in totals]
        return (begin[0], begin[1], totals[0] - begin[0], totals[1] - begin[1])
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        pads = tuple(int(p) for p in padding)
    else:
        ph, pw = pair(padding, "padding")
        pads = (ph, pw, ph, pw)
    if min(pads) < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return pads


class Conv2d(Layer):
    """2-D convolution (cross-correlation) as ``torch.nn.Conv2d``: input (N, in_channels, H, W), output
    (N, out_channels, H', W') with H' = ⌊(H + pad_top + pad_bottom − dilation·(kh − 1) − 1) / stride⌋ + 1.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (number of filters).
        kernel_size: kh and kw, an int or a pair (kh, kw).
        stride: an int or a pair (default 1).
        padding: zeros added around the input: an int, a pair (ph, pw), four numbers (top, left, bottom,
            right), "valid" (none) or "same" (output size = input size; stride 1 only). Default 0.
        dilation: spacing between kernel taps, an int or a pair (default 1).
        groups: in_channels and out_channels split into this many groups convolved apart (in_channels for
            a depthwise convolution); both must be divisible by it. Default 1.
        bias: whether the layer has a bias (default True).

    Parameters (PyTorch's layout, float32, PyTorch's default uniform initialisation):
        weight: (out_channels, in_channels / groups, kh, kw).
        bias: (out_channels,), when ``bias``.
    Set them with ``conv.weight = array`` (shape-checked) before adding the layer to a graph, or with
    ``graph.set_params(name, weight=...)`` after.
    """
    batch_independent = True
    prefix = "conv"
    linear = True
    weighted = True
    accepts_epilogue = True

    @classmethod
    def example(cls):
        return cls(3, 4, 3, padding=1), [(None, 3, 6, 6)]

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, ...] | str = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True):
        kernel, stride, dilation = pair(kernel_size, "kernel_size"), pair(stride, "stride"), pair(dilation, "dilation")
        if min(kernel + stride + dilation) < 1:
            raise ValueError(f"Conv2d: kernel_size, stride and dilation must be >= 1, got {kernel}, {stride}, {dilation}")
        if in_channels < 1 or out_channels < 1 or groups < 1:
            raise ValueError("Conv2d: in_channels, out_channels and groups must be >= 1")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must be divisible by groups ({groups})")
        super().__init__(in_channels=int(in_channels), out_channels=int(out_channels), kernel_size=kernel,
                         stride=stride, pads=conv_pads(padding, kernel, dilation, stride), dilation=dilation,
                         groups=int(groups), bias=bool(bias))

    @classmethod
    def param_shapes(cls, attrs):
        kh, kw = attrs["kernel_size"]
        shapes = {"weight": (attrs["out_channels"], attrs["in_channels"] // attrs["groups"], kh, kw)}
        if attrs["bias"]:
            shapes["bias"] = (attrs["out_channels"],)
        return shapes

    @classmethod
    def init_params(cls, attrs):
        shapes = cls.param_shapes(attrs)
        fan_in = shapes["weight"][1] * shapes["weight"][2] * shapes["weight"][3]
        return {name: fan_in_uniform(shape, fan_in) for name, shape in shapes.items()}

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        require_rank(inputs, 4, "(N, C, H, W)")
        require_window(attrs)
        require_activation(attrs)
        if x.shape[1] != attrs["in_channels"]:
            raise ShapeError(f"expects {attrs['in_channels']} input channels, got {x.shape[1]} from {x.describe()}")
        require_static(x, (2, 3), "spatial size")
        top, left, bottom, right = attrs["pads"]
        sizes = [conv_output_size(x.shape[2 + i], attrs["kernel_size"][i], attrs["stride"][i],
                                  (top, left)[i], (bottom, right)[i], attrs["dilation"][i]) for i in range(2)]
        if min(sizes) < 1:
            raise ShapeError(f"input {x.describe()} is too small for kernel {attrs['kernel_size']} "
                             f"with dilation {attrs['dilation']} and padding {attrs['pads']}")
        return TensorType((x.shape[0], attrs["out_channels"], *sizes))

    @classmethod
    def summary(cls, attrs):
        (kh, kw), (sh, sw) = attrs["kernel_size"], attrs["stride"]
        text = f"{attrs['in_channels']}→{attrs['out_channels']}, {kh}×{kw}"
        return text + (f", stride {sh}" if (sh, sw) != (1, 1) else "")

    @classmethod
    def macs(cls, attrs, inputs, output):
        kh, kw = attrs["kernel_size"]
        _, cout, ho, wo = output.shape
        return cout * ho * wo * (attrs["in_channels"] // attrs["groups"]) * kh * kw


# --- ONNX export -----------------------------------------------------------------------------------------------
@exports("Conv2d")
def _conv_to_onnx(e, n):
    a = n.attrs
    inputs = [n.inputs[0], e.param(n, "weight")] + ([e.param(n, "bias")] if a["bias"] else [])
    e.emit(n, "Conv", inputs, kernel_shape=list(a["kernel_size"]), strides=list(a["stride"]),
           pads=list(a["pads"]), dilations=list(a["dilation"]), group=a["groups"])


# --- ONNX import -----------------------------------------------------------------------------------------------
# How the importer reads the ONNX ops that become this family's layers (cnngraph/onnx/mapping.py); one
# ONNX node, one node of ours.


@imports("Conv")
def _conv(imp, node):
    a = imp.attrs(node)
    x = imp.value(node.input[0])
    weight = imp.const(node.input[1], "the weight")
    if weight.ndim != 4 or len(imp.shape(x)) != 4:
        raise Unsupported("only 2-D convolutions (4-D input and weight)")
    bias = imp.const(node.input[2], "the bias") if len(node.input) > 2 and node.input[2] else None
    groups = int(a.get("group", 1))
    kernel = tuple(int(k) for k in weight.shape[2:])
    if "kernel_shape" in a and tuple(a["kernel_shape"]) != kernel:
        raise Unsupported(f"kernel_shape {a['kernel_shape']} differs from the weight's {kernel}")
    strides, dilations = pair_attr(a.get("strides"), (1, 1), "strides"), pair_attr(a.get("dilations"), (1, 1), "dilations")
    attrs = dict(in_channels=int(weight.shape[1]) * groups, out_channels=int(weight.shape[0]), kernel_size=kernel,
                 stride=strides, pads=spatial(imp, node, x, kernel, strides, dilations, a), dilation=dilations,
                 groups=groups, bias=bias is not None)
    params = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
    imp.add(node, "Conv2d", [x], attrs, params)


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
