"""Transposed convolutions as PyTorch defines them: ConvTranspose1d, 2d and 3d, weight (in, out/groups, k...).

A transposed convolution is the gradient of a convolution with respect to its input: each input pixel
scatters its weighted kernel into the output, taps ``stride`` apart. Along each axis
out = (in − 1)·stride − pad_begin − pad_end + dilation·(k − 1) + output_padding + 1; the padding *removes*
rows from the full scatter, output_padding adds rows at the end (which only the bias reaches).
Pads are stored as 2·n numbers, the begins then the ends, so that ONNX's asymmetric pads fit.
"""
from __future__ import annotations

import math

from ..errors import ShapeError
from ..init import fan_in_uniform
from ..layer import Layer, require_activation, require_rank, require_static, require_window
from ..onnx.handler_tools import Unsupported
from ..onnx.mapping import exports, imports
from ..onnx.nd_attrs import auto_pad_mode, explicit_pads, ints_attr
from ..shapes import TensorType, ntuple
from .conv import _ConvNd, check_padding_mode


def transposed_output_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int,
                           output_padding: int) -> int:
    return (size - 1) * stride - pad_begin - pad_end + dilation * (kernel - 1) + output_padding + 1


class _ConvTransposeNd(Layer):
    """What ConvTranspose1d, 2d and 3d share; ``dims`` is the number of spatial axes."""
    dims: int = 2
    layout = "(N, C, H, W)"
    batch_independent = True
    prefix = "deconv"
    linear = True
    weighted = True
    accepts_epilogue = True

    @classmethod
    def example(cls):
        return cls(3, 4, 3, stride=2, padding=1, output_padding=1), [(None, 3) + (4, 3, 2)[:cls.dims]]

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, padding_mode: str = "zeros"):
        name, n = type(self).__name__, self.dims
        kernel, stride = ntuple(kernel_size, n, "kernel_size"), ntuple(stride, n, "stride")
        dilation, output_padding = ntuple(dilation, n, "dilation"), ntuple(output_padding, n, "output_padding")
        check_padding_mode(name, padding_mode)
        if isinstance(padding, (tuple, list)) and len(padding) == 2 * n:
            pads = tuple(int(p) for p in padding)
        else:
            pads = ntuple(padding, n, "padding") * 2
        if min(kernel + stride + dilation) < 1 or min(pads) < 0:
            raise ValueError(f"{name}: kernel_size, stride and dilation must be >= 1 and padding >= 0, got "
                             f"{kernel}, {stride}, {dilation}, {padding}")
        if any(not 0 <= p < max(s, d) for p, s, d in zip(output_padding, stride, dilation)):
            raise ValueError(f"{name}: output_padding {output_padding} must be smaller than either stride "
                             f"{stride} or dilation {dilation} (as in PyTorch)")
        if in_channels < 1 or out_channels < 1 or groups < 1:
            raise ValueError(f"{name}: in_channels, out_channels and groups must be >= 1")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must be divisible by groups ({groups})")
        super().__init__(in_channels=int(in_channels), out_channels=int(out_channels), kernel_size=kernel,
                         stride=stride, pads=pads, output_padding=output_padding, groups=int(groups),
                         bias=bool(bias), dilation=dilation)

    @classmethod
    def param_shapes(cls, attrs):
        kernel = attrs["kernel_size"]               # read first: a missing attribute is named by its key
        shapes = {"weight": (attrs["in_channels"], attrs["out_channels"] // attrs["groups"], *kernel)}
        if attrs["bias"]:
            shapes["bias"] = (attrs["out_channels"],)
        return shapes

    @classmethod
    def init_params(cls, attrs):
        shapes = cls.param_shapes(attrs)
        fan_in = math.prod(shapes["weight"][1:])        # PyTorch: weight.size(1) · receptive field
        return {name: fan_in_uniform(shape, fan_in) for name, shape in shapes.items()}

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        n = cls.dims
        require_rank(inputs, 2 + n, cls.layout)
        require_window(attrs)
        require_activation(attrs)
        if any(len(attrs[key]) != n for key in ("kernel_size", "stride", "dilation", "output_padding")) \
                or len(attrs["pads"]) != 2 * n:
            raise ShapeError(f"kernel_size, stride, dilation, output_padding need {n} values and pads {2 * n}, "
                             f"got {attrs['kernel_size']}, {attrs['stride']}, {attrs['dilation']}, "
                             f"{attrs['output_padding']}, {attrs['pads']}")
        if min(attrs["output_padding"]) < 0:
            raise ShapeError(f"output_padding must be >= 0, got {attrs['output_padding']}")
        if x.shape[1] != attrs["in_channels"]:
            raise ShapeError(f"expects {attrs['in_channels']} input channels, got {x.shape[1]} from {x.describe()}")
        require_static(x, range(2, 2 + n), "spatial size")
        pads = attrs["pads"]
        sizes = [transposed_output_size(x.shape[2 + i], attrs["kernel_size"][i], attrs["stride"][i], pads[i],
                                        pads[n + i], attrs["dilation"][i], attrs["output_padding"][i])
                 for i in range(n)]
        if min(sizes) < 1:
            raise ShapeError(f"padding {attrs['pads']} removes the whole output of input {x.describe()} "
                             f"with kernel {attrs['kernel_size']} and stride {attrs['stride']}")
        return TensorType((x.shape[0], attrs["out_channels"], *sizes))

    summary = _ConvNd.summary               # "3→8, 3×3, stride 2", as a convolution says it

    @classmethod
    def macs(cls, attrs, inputs, output):
        """Every input pixel meets every tap of its group's filters once."""
        cout_g = attrs["out_channels"] // attrs["groups"]
        return math.prod(inputs[0].shape[1:]) * cout_g * math.prod(attrs["kernel_size"])


_ARGS = """
    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        kernel_size: {k}, an int or a tuple of {n}.
        stride: an int or a tuple of {n} (default 1).
        padding: dilation·(k − 1) − padding zeros around the input, i.e. rows removed from both ends of the
            full output: an int or a tuple of {n}{extra}. Default 0.
        output_padding: rows added at the end of each axis of the output, an int or a tuple of {n}; each
            smaller than its stride or its dilation (default 0).
        groups: in_channels and out_channels split into this many groups (default 1).
        bias: whether the layer has a bias (default True).
        dilation: spacing between kernel taps, an int or a tuple of {n} (default 1).
        padding_mode: "zeros" (the only mode supported).

    Parameters (PyTorch's layout, float32, PyTorch's default uniform initialisation):
        weight: (in_channels, out_channels / groups, {k}).
        bias: (out_channels,), when ``bias``.
"""


class ConvTranspose1d(_ConvTransposeNd):
    __doc__ = """1-D transposed convolution as ``torch.nn.ConvTranspose1d``: input (N, in_channels, L), output
    (N, out_channels, L') with L' = (L − 1)·stride − 2·padding + dilation·(k − 1) + output_padding + 1.
""" + _ARGS.format(k="k", n=1, extra="")
    dims = 1
    layout = "(N, C, L)"


class ConvTranspose2d(_ConvTransposeNd):
    __doc__ = """2-D transposed convolution as ``torch.nn.ConvTranspose2d``: input (N, in_channels, H, W), output
    (N, out_channels, H', W'), each axis as in ConvTranspose1d.
""" + _ARGS.format(k="kh, kw", n=2, extra=", or 4 numbers (top, left, bottom, right) as ONNX allows")
    dims = 2


class ConvTranspose3d(_ConvTransposeNd):
    __doc__ = """3-D transposed convolution as ``torch.nn.ConvTranspose3d``: input (N, in_channels, D, H, W),
    output (N, out_channels, D', H', W'), each axis as in ConvTranspose1d.
""" + _ARGS.format(k="kd, kh, kw", n=3, extra=", or 6 numbers (the begins, then the ends) as ONNX allows")
    dims = 3
    layout = "(N, C, D, H, W)"


CONV_TRANSPOSE_BY_RANK = {1: "ConvTranspose1d", 2: "ConvTranspose2d", 3: "ConvTranspose3d"}


# --- ONNX export -----------------------------------------------------------------------------------------------
@exports("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")
def _conv_transpose_to_onnx(e, n):
    a = n.attrs
    inputs = [n.inputs[0], e.param(n, "weight")] + ([e.param(n, "bias")] if a["bias"] else [])
    extra = {"output_padding": list(a["output_padding"])} if any(a["output_padding"]) else {}
    e.emit(n, "ConvTranspose", inputs, kernel_shape=list(a["kernel_size"]), strides=list(a["stride"]),
           pads=list(a["pads"]), dilations=list(a["dilation"]), group=a["groups"], **extra)


# --- ONNX import -----------------------------------------------------------------------------------------------
def _pads_from_output_shape(size, kernel, strides, dilations, output_padding, output_shape, mode):
    """The spec's rule: total = stride·(in − 1) + output_padding + (k − 1)·dilation + 1 − out, its odd cell
    at the beginning except under SAME_UPPER. An output longer than the full scatter (total < 0) ends in rows
    only the bias reaches: our output_padding. Returns (pads, output_padding)."""
    if any(not isinstance(s, int) for s in size):
        raise Unsupported("output_shape or auto_pad SAME needs a static spatial size")
    begins, ends, extra = [], [], []
    for i in range(len(kernel)):
        total = strides[i] * (size[i] - 1) + output_padding[i] + (kernel[i] - 1) * dilations[i] + 1 - output_shape[i]
        if output_padding[i] and total:     # onnxruntime and onnx's reference disagree on what this means
            raise Unsupported("output_shape together with output_padding, other than the full output's size")
        if total < 0 and mode != "NOTSET":     # onnxruntime clamps to 0, the spec pads before: they disagree
            raise Unsupported(f"auto_pad {mode} with an output longer than the full scatter along axis {2 + i}")
        begin = total // 2 if mode == "SAME_UPPER" else total - total // 2
        if begin < 0:
            raise Unsupported(f"output_shape {list(output_shape)} adds rows before the full scatter")
        begins.append(begin)
        ends.append(max(0, total - begin))
        extra.append(output_padding[i] + max(0, begin - total))
    return tuple(begins) + tuple(ends), tuple(extra)


@imports("ConvTranspose")
def _conv_transpose(imp, node):
    a = imp.attrs(node)
    x = imp.value(node.input[0])
    weight = imp.const(node.input[1], "the weight")
    dims = weight.ndim - 2
    if dims not in CONV_TRANSPOSE_BY_RANK or len(imp.shape(x)) != weight.ndim:
        raise Unsupported(f"a weight of rank {weight.ndim} on an input of rank {len(imp.shape(x))} "
                          "(1-D, 2-D and 3-D transposed convolutions are supported)")
    bias = imp.const(node.input[2], "the bias") if len(node.input) > 2 and node.input[2] else None
    groups = int(a.get("group", 1))
    if groups < 1 or weight.shape[0] % groups:
        raise Unsupported(f"group {groups} does not divide the weight's {weight.shape[0]} input channels")
    kernel = tuple(int(k) for k in weight.shape[2:])
    if "kernel_shape" in a and tuple(a["kernel_shape"]) != kernel:
        raise Unsupported(f"kernel_shape {a['kernel_shape']} differs from the weight's {kernel}")
    strides, dilations = ints_attr(a.get("strides"), dims, "strides"), ints_attr(a.get("dilations"), dims, "dilations")
    output_padding = ints_attr(a.get("output_padding"), dims, "output_padding", default=0)
    mode, size = auto_pad_mode(a), imp.shape(x)[2:]
    if "output_shape" in a:
        target = tuple(int(s) for s in a["output_shape"])[-dims:]
        if len(target) != dims:
            raise Unsupported(f"output_shape {list(a['output_shape'])} does not give every spatial axis")
        pads, output_padding = _pads_from_output_shape(size, kernel, strides, dilations, output_padding, target,
                                                       mode)
    elif mode in ("SAME_UPPER", "SAME_LOWER"):          # output = input · stride
        target = tuple(s * st if isinstance(s, int) else s for s, st in zip(size, strides))
        pads, output_padding = _pads_from_output_shape(size, kernel, strides, dilations, output_padding, target,
                                                       mode)
    elif mode == "VALID":
        pads = (0,) * (2 * dims)
    else:
        pads = explicit_pads(a, dims)
    attrs = dict(in_channels=int(weight.shape[0]), out_channels=int(weight.shape[1]) * groups, kernel_size=kernel,
                 stride=strides, pads=pads, output_padding=output_padding, groups=groups, bias=bias is not None,
                 dilation=dilations)
    params = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
    imp.add(node, CONV_TRANSPOSE_BY_RANK[dims], [x], attrs, params)


# --- gradients -------------------------------------------------------------------------------------------------
# y = conv_transpose(x, W) + b is the adjoint of a convolution by W: ∂x = conv(∂y, W) (same stride, pads,
# dilation, groups; W (in, out/groups, k...) read as a convolution's (out, in/groups, k...)), and ∂W is that
# convolution's weight gradient with x and ∂y swapped: Σ_n x ⋆ ∂y. ∂b = Σ ∂y. An output_padding as large as the
# stride (allowed when the dilation is larger) leaves rows the convolution back does not map: refused.
from ..autodiff.registry import gradient  # noqa: E402
from . import nd_gradients  # noqa: E402  (ConvNdGradWeight)
from .activations import activation_gradient  # noqa: E402


@gradient("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")
def _conv_transpose_gradient(b, node, dy):
    from ..errors import GraphError
    a = node.attrs
    if any(p >= s for p, s in zip(a["output_padding"], a["stride"])):
        raise GraphError(f"{node.label()}: no gradient rule for output_padding {a['output_padding']} not below "
                         f"the stride {a['stride']}")
    dy = activation_gradient(b, node, dy)
    x, n = node.inputs[0], len(a["kernel_size"])
    conv = dict(in_channels=a["out_channels"], out_channels=a["in_channels"], kernel_size=a["kernel_size"],
                stride=a["stride"], pads=a["pads"], dilation=a["dilation"], groups=a["groups"])
    grads = {0: b.add(node, "x", f"Conv{n}d", [dy], {"weight": node.params["weight"]}, **conv, bias=False)}
    if n == 2:
        matrix = b.add(node, "weight.matrix", "Conv2dGradWeight", [dy, x], **conv)
        grads["weight"] = b.add(node, "weight", "Reshape", [matrix], shape=node.params["weight"].shape)
    else:
        grads["weight"] = b.add(node, "weight", "ConvNdGradWeight", [dy, x], **nd_gradients.conv_window_attrs(conv))
    if a["bias"]:
        grads["bias"] = b.add(node, "bias", "SumExcept", [dy], axis=1)
    return grads
