"""ONNX ops to cnngraph's layers: one handler per op, called node by node by the importer (importer.py).

A handler reads its node through the importer ``imp`` (attributes, constant inputs, the values of our graph it
reads) and adds our node with imp.add (named after the ONNX output) or helper nodes first with imp.add_step
("<output>/<op>"); it raises Unsupported for a form it does not map, which lists the node in the importer's
one error. Padding and pooling, which read the exporter's ceil_mode forms back, are in pool_handlers.py.

Op mapping (ONNX -> ours), one node of ours per ONNX node wherever the IR has the op; no handler looks at the
nodes around it. Nicer forms (MatMul + Add -> Linear, a Pad merged into its pool, the exporter's ceil_mode
average written as window sums -> AvgPool2d, a Reshape that merges axes -> Flatten) are canonicalization
rules of the pass manager at level 1 (passes/canon_*.py), run by cg.optimize(graph, level=1):
  Conv (2-D; auto_pad made explicit) -> Conv2d;  BatchNormalization (inference) -> BatchNorm2d
  Gemm with constant B -> Linear (alpha folded into the weight, transA a Transpose, a non-vector C an Add);
      with computed B -> Transpose/MatMul/Mul/Add
  MatMul -> MatMul (a constant operand a Constant node)
  Relu, LeakyRelu, Sigmoid, Tanh -> ReLU, LeakyReLU, Sigmoid, Tanh
  Clip -> ReLU6 (0, 6), ReLU (0, none), else Hardtanh(min, max)
  Softmax -> Softmax(axis) from opset 13; before, Flatten -> Softmax(-1) -> Reshape (it normalized the tail)
  MaxPool / AveragePool (2-D) -> MaxPool2d / AvgPool2d;  GlobalAveragePool / GlobalMaxPool -> Global*Pool2d
  Flatten(1) -> Flatten; other axes and Reshape/Squeeze/Unsqueeze -> Reshape
  Transpose, Pad, ReduceMean, Sub, Div, LRN (odd sizes) -> the generic ops
  Add / Sum -> Add (broadcast=True when shapes differ);  Mul -> Mul;  Concat -> Concat
  Identity, Dropout (inference), Cast to float -> Identity

Refused, every problem listed with its node names in one error: ops with no mapping, 1-D/3-D convolution and
pooling, training-mode nodes, even-sized LRN, shapes computed from values (not from shapes).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import OnnxImportError
from ..shapes import product
from .fold import shape_array
from .shared import axis_index


class Unsupported(Exception):
    """A node the importer cannot map; the message says why."""


def nice_float(value) -> float:
    """The shortest decimal that a float32 attribute came from (1e-5 rather than 9.99999974e-06)."""
    return float(str(np.float32(value)))


# --- window attributes -------------------------------------------------------------------------------------------
def _same_pads(size, kernel, stride, dilation, mode: str) -> tuple[int, int]:
    """auto_pad SAME_*: out = ceil(in/stride), total = max(0, (out−1)·s + (k−1)·d + 1 − in); UPPER puts the
    extra cell at the end, LOWER at the beginning."""
    if not isinstance(size, int):
        raise Unsupported("auto_pad SAME needs a static spatial size")
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - size)
    small, large = total // 2, total - total // 2
    return (small, large) if mode == "SAME_UPPER" else (large, small)


def spatial(imp, node, x, kernel, strides, dilations, a) -> tuple[int, int, int, int]:
    mode = a.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode == "NOTSET":
        pads = tuple(int(p) for p in a.get("pads", (0, 0, 0, 0)))
        if len(pads) != 4:
            raise Unsupported(f"pads {list(pads)} is not 2-D")
        return pads
    if mode == "VALID":
        return (0, 0, 0, 0)
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise Unsupported(f"auto_pad {mode!r}")
    size = imp.shape(x)[2:]
    (top, bottom), (left, right) = (_same_pads(size[i], kernel[i], strides[i], dilations[i], mode) for i in range(2))
    return (top, left, bottom, right)


def pair(values, default, what):
    values = tuple(int(v) for v in values) if values is not None else default
    if len(values) != 2:
        raise Unsupported(f"{what} {list(values)} is not 2-D")
    return values


# --- one handler per ONNX op -------------------------------------------------------------------------------------
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
    strides, dilations = pair(a.get("strides"), (1, 1), "strides"), pair(a.get("dilations"), (1, 1), "dilations")
    attrs = dict(in_channels=int(weight.shape[1]) * groups, out_channels=int(weight.shape[0]), kernel_size=kernel,
                 stride=strides, pads=spatial(imp, node, x, kernel, strides, dilations, a), dilation=dilations,
                 groups=groups, bias=bias is not None)
    params = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
    imp.add(node, "Conv2d", [x], attrs, params)


def _gemm(imp, node):
    """alpha·A'·B' + beta·C: a Linear when B (and C) are constants, else MatMul and friends."""
    a = imp.attrs(node)
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    if not (np.isfinite(alpha) and np.isfinite(beta)):      # alpha·(A·B) is not A·(alpha·B) for infinities
        raise Unsupported(f"alpha {alpha} and beta {beta} must be finite")
    x = imp.value(node.input[0])
    if len(imp.shape(x)) != 2:
        raise Unsupported("the input must be 2-D")
    if a.get("transA", 0):
        x = imp.add_step(node, "Transpose", [x], dict(perm=(1, 0)))
    c = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if node.input[1] in imp.consts:
        b = imp.const(node.input[1], "B")
        if b.ndim != 2:
            raise OnnxImportError(f"B ({node.input[1]!r}) has shape {list(b.shape)}; Gemm takes a matrix")
        weight = b if a.get("transB", 0) else b.T
        weight = weight if alpha == 1.0 else weight * np.float32(alpha)
        out = int(weight.shape[0])
        bias = None
        if c is not None and c in imp.consts:
            constant = imp.const(c, "C")
            if constant.size in (1, out) and (constant.ndim < 2 or constant.shape[0] == 1):
                bias, c = np.broadcast_to(constant.reshape(-1), (out,)) * np.float32(beta), None
        params = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
        attrs = dict(in_features=int(weight.shape[1]), out_features=out, bias=bias is not None)
        if c is None:
            imp.add(node, "Linear", [x], attrs, params)
            return
        product = imp.add_step(node, "Linear", [x], attrs, params)
    else:
        b = imp.value(node.input[1])
        if a.get("transB", 0):
            b = imp.add_step(node, "Transpose", [b], dict(perm=(1, 0)))
        product = imp.add_step(node, "MatMul", [x, b])
        if alpha != 1.0:
            product = imp.add_step(node, "Mul", [product, _scalar(imp, node, "alpha", alpha)])
        if c is None:
            imp.add(node, "Identity", [product])
            return
    c_value = imp.operand(c)
    if beta != 1.0:
        c_value = imp.add_step(node, "Mul", [c_value, _scalar(imp, node, "beta", beta)])
    imp.add(node, "Add", [product, c_value], dict(broadcast=True))


def _scalar(imp, node, key: str, value: float) -> str:
    return imp.add_step(node, "Constant", [], dict(shape=()), dict(value=np.array(value, np.float32)))


def _sum(imp, node):
    inputs = [imp.operand(name) for name in node.input]
    if len(inputs) == 1:
        imp.add(node, "Identity", inputs)
        return
    same = all(imp.shape(i) == imp.shape(inputs[0]) for i in inputs)
    imp.add(node, "Add", inputs, {} if same else dict(broadcast=True))


def binary(op: str):
    def handler(imp, node):
        imp.add(node, op, [imp.operand(node.input[0]), imp.operand(node.input[1])])
    return handler


def _simple(op: str, **attr_map):
    def handler(imp, node):
        a = imp.attrs(node)
        attrs = {ours: nice_float(a.get(theirs, default)) for ours, (theirs, default) in attr_map.items()}
        imp.add(node, op, [imp.value(node.input[0])], attrs)
    return handler


def _clip(imp, node):
    """Clip(0, 6) is ReLU6, Clip(0, ∞) ReLU, any other Hardtanh(min, max)."""
    if imp.opset < 11:
        a = imp.attrs(node)
        low, high = a.get("min"), a.get("max")
    else:
        low, high = (None if bound is None else bound.item()
                     for bound in (imp.optional_const(node, 1, "min"), imp.optional_const(node, 2, "max")))
    low = -np.inf if low is None else nice_float(low)
    high = np.inf if high is None else nice_float(high)
    x = imp.value(node.input[0])
    if (low, high) == (0.0, 6.0):
        imp.add(node, "ReLU6", [x])
    elif (low, high) == (0.0, np.inf):
        imp.add(node, "ReLU", [x])
    elif low > high:                                   # min(max(x, low), high) is high everywhere
        imp.add(node, "Hardtanh", [x], dict(min_val=high, max_val=high))
    else:
        imp.add(node, "Hardtanh", [x], dict(min_val=low, max_val=high))


def _softmax(imp, node):
    """From opset 13 Softmax normalizes along ``axis``; before, over the axes from ``axis`` on, flattened."""
    x = imp.value(node.input[0])
    rank = len(imp.shape(x))
    axis = int(imp.attrs(node).get("axis", -1 if imp.opset >= 13 else 1))
    if not -rank <= axis < rank:
        raise Unsupported(f"axis {axis} out of range for rank {rank}")
    if imp.opset >= 13 or axis % rank == rank - 1:
        imp.add(node, "Softmax", [x], dict(axis=axis if imp.opset >= 13 else -1))
        return
    flat = imp.add_step(node, "Flatten", [x], dict(start_dim=axis % rank, end_dim=-1))
    soft = imp.add_step(node, "Softmax", [flat], dict(axis=-1))
    imp.add(node, "Reshape", [soft], dict(shape=imp.shape(x)))


def _batchnorm(imp, node):
    a = imp.attrs(node)
    if a.get("training_mode", 0):
        raise Unsupported("training_mode = 1")
    if imp.opset < 9 and not a.get("spatial", 1):
        raise Unsupported("spatial = 0 (per-position statistics)")
    x = imp.value(node.input[0])
    weight, bias, mean, var = (imp.const(n, what) for n, what in zip(node.input[1:5], ("scale", "B", "mean", "var")))
    if weight.ndim != 1:
        raise OnnxImportError(f"scale ({node.input[1]!r}) has shape {list(weight.shape)}; one value per channel expected")
    params = dict(weight=weight, bias=bias, running_mean=mean, running_var=var)
    imp.add(node, "BatchNorm2d", [x], dict(num_features=int(weight.shape[0]), eps=nice_float(a.get("epsilon", 1e-5))),
            params)


def _dropout(imp, node):
    if len(node.input) > 2 and node.input[2] and bool(imp.const(node.input[2], "training_mode").item()):
        raise Unsupported("training_mode = true")
    imp.add(node, "Identity", [imp.value(node.input[0])])


def _flatten(imp, node):
    """ONNX Flatten gives 2-D (prod(dims[:axis]), prod(dims[axis:])): our Flatten when axis is 1."""
    x = imp.value(node.input[0])
    shape = imp.shape(x)
    rank, axis = len(shape), int(imp.attrs(node).get("axis", 1))
    if not -rank <= axis <= rank:
        raise Unsupported(f"axis {axis} out of range for rank {rank}")
    axis += rank if axis < 0 else 0
    if axis == 1 and rank >= 2:
        imp.add(node, "Flatten", [x], dict(start_dim=1, end_dim=-1))
    else:
        imp.add(node, "Reshape", [x], dict(shape=(product(shape[:axis]), product(shape[axis:]))))


def _reshape(imp, node):
    x = imp.value(node.input[0])
    if node.input[1] not in imp.consts:
        raise Unsupported("the target shape is computed from values, not from shapes")
    target = [t if isinstance(t, str) else int(t) for t in imp.consts[node.input[1]].reshape(-1)]
    if imp.attrs(node).get("allowzero", 0) and 0 in target:          # without a 0, allowzero changes nothing
        raise Unsupported("allowzero = 1 with a 0 in the shape (an empty tensor)")
    imp.add(node, "Reshape", [x], dict(shape=tuple(target)))


def _squeeze_unsqueeze(imp, node):
    """A Reshape to the shape ONNX's Squeeze/Unsqueeze gives (axes: attribute before 13, input from 13)."""
    x = imp.value(node.input[0])
    shape = list(imp.shape(x))
    if imp.opset < 13:
        axes = imp.attrs(node).get("axes")
    else:
        axes = imp.optional_const(node, 1, "axes")
    axes = None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]
    if node.op_type == "Unsqueeze":
        rank = len(shape) + len(axes)
        for axis in sorted(axis_index(a, rank, "Unsqueeze's axis") for a in axes):
            shape.insert(axis, 1)
    else:
        drop = ({axis_index(a, len(shape), "Squeeze's axis") for a in axes} if axes
                else {i for i, d in enumerate(shape) if d == 1})
        if any(shape[i] != 1 for i in drop):
            raise Unsupported(f"squeezes axes {sorted(drop)} of {shape}, which are not all 1")
        shape = [d for i, d in enumerate(shape) if i not in drop]
    imp.add(node, "Reshape", [x], dict(shape=tuple(shape)))


def _transpose(imp, node):
    x = imp.value(node.input[0])
    perm = imp.attrs(node).get("perm") or list(reversed(range(len(imp.shape(x)))))
    imp.add(node, "Transpose", [x], dict(perm=tuple(int(p) for p in perm)))


def _reduce_mean(imp, node):
    a = imp.attrs(node)
    x = imp.value(node.input[0])
    axes = a.get("axes") if imp.opset < 18 else imp.optional_const(node, 1, "axes")
    axes = () if axes is None else tuple(int(v) for v in np.asarray(axes).reshape(-1))
    if not axes and a.get("noop_with_empty_axes", 0):
        imp.add(node, "Identity", [x])
        return
    imp.add(node, "ReduceMean", [x], dict(axes=axes, keepdims=bool(a.get("keepdims", 1))))


def _global_maxpool(imp, node):
    imp.add(node, "GlobalMaxPool2d", [imp.value(node.input[0])])


def _lrn(imp, node):
    a = imp.attrs(node)
    size = int(a["size"])
    if size % 2 == 0:
        raise Unsupported(f"even size {size}: ONNX centres the window one channel off PyTorch's LocalResponseNorm")
    attrs = dict(size=size, alpha=nice_float(a.get("alpha", 1e-4)), beta=nice_float(a.get("beta", 0.75)),
                 k=nice_float(a.get("bias", 1.0)))
    imp.add(node, "LocalResponseNorm", [imp.value(node.input[0])], attrs)


def _concat(imp, node):
    imp.add(node, "Concat", [imp.operand(n) for n in node.input if n], dict(axis=int(imp.attrs(node)["axis"])))


def _global_avgpool(imp, node):
    imp.add(node, "GlobalAvgPool2d", [imp.value(node.input[0])])


def _constant(imp, node):
    a = imp.attrs(node)
    if "value" in a:
        if a["value"].data_location == onnx.TensorProto.EXTERNAL:
            raise Unsupported("external data")
        imp.consts[node.output[0]] = numpy_helper.to_array(a["value"])
    elif a.keys() & {"value_float", "value_floats", "value_int", "value_ints"}:
        key = next(iter(a.keys() & {"value_float", "value_floats", "value_int", "value_ints"}))
        imp.consts[node.output[0]] = np.array(a[key], dtype=np.float32 if "float" in key else np.int64)
    else:
        raise Unsupported(f"the {', '.join(a)} form" if a else "no value attribute")


def _shape(imp, node):
    """A value's shape as a constant (a symbolic batch stays a name), for the reshape arithmetic to fold."""
    a = imp.attrs(node)
    shape = imp.shape(imp.value(node.input[0]))
    imp.consts[node.output[0]] = shape_array(shape)[a.get("start", 0):a.get("end", len(shape))]


def _cast(imp, node):
    if imp.attrs(node)["to"] != onnx.TensorProto.FLOAT:
        raise Unsupported("a cast of a computed value to a type other than float32")
    imp.add(node, "Identity", [imp.value(node.input[0])])


def _identity(imp, node):
    imp.add(node, "Identity", [imp.value(node.input[0])])


HANDLERS = {
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": binary("MatMul"),
    "Add": _sum,
    "Sum": _sum,
    "Relu": _simple("ReLU"),
    "LeakyRelu": _simple("LeakyReLU", negative_slope=("alpha", 0.01)),
    "Sigmoid": _simple("Sigmoid"),
    "Tanh": _simple("Tanh"),
    "Clip": _clip,                        # Clip(0, 6) -> ReLU6
    "Softmax": _softmax,
    "GlobalAveragePool": _global_avgpool,
    "BatchNormalization": _batchnorm,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Concat": _concat,
    "Identity": _identity,
    "Dropout": _dropout,
    "Constant": _constant,
    "Mul": binary("Mul"),
    "Sub": binary("Sub"),
    "Div": binary("Div"),
    "Transpose": _transpose,
    "Squeeze": _squeeze_unsqueeze,
    "Unsqueeze": _squeeze_unsqueeze,
    "ReduceMean": _reduce_mean,
    "GlobalMaxPool": _global_maxpool,
    "LRN": _lrn,
    "Shape": _shape,
    "Cast": _cast,
}
