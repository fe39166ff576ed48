"""Generic tensor ops: what imported models contain besides CNN layers.

ONNX models made by others hold constants, element-wise arithmetic with broadcasting, reshapes, transposes
and products between their layers. These ops keep such models whole in the IR (the NumPy backend runs them,
the exporter writes them back) with ONNX's semantics, under PyTorch-style names where PyTorch has one.
Padding is in padding.py, LocalResponseNorm with the normalisations, GlobalMaxPool2d with the adaptive pools,
Hardtanh (ONNX's Clip) with the activations.
"""
from __future__ import annotations

import numpy as np

from ..autodiff.registry import gradient
from ..errors import ExportError, ShapeError
from ..layer import Layer, Operand
from ..onnx.handler_tools import Unsupported, binary
from ..onnx.mapping import emit_as, exports, imports
from ..onnx.shared import axis_index
from ..shapes import TensorType, product
from .structure import broadcast_shape


def _factors(dim) -> tuple[int, list[str]]:
    """A dim as (number, symbols): 12 -> (12, []), "3*N" -> (3, ["N"]), a sum "N+2" stays one opaque symbol."""
    if isinstance(dim, int):
        return dim, []
    number, names = 1, []
    for factor in str(dim).split("*") if "+" not in str(dim) else [str(dim)]:
        if factor.isdigit():
            number *= int(factor)
        else:
            names.append(factor)
    return number, names


def _split(dims) -> tuple[int, list[str]]:
    number, names = 1, []
    for dim in dims:
        n, s = _factors(dim)
        number *= n
        names += s
    return number, sorted(names)


class Constant(Layer):
    """A constant tensor (an ONNX initializer that is not a layer's weight): no inputs, one parameter.

    Args:
        value: the array (any shape); stored as a read-only float32 copy, parameter ``value``.
    """
    prefix = "const"
    arity = (0, 0)
    constant = True

    @classmethod
    def example(cls):
        return cls(np.arange(6, dtype=np.float32).reshape(2, 3)), []

    def __init__(self, value: np.ndarray):
        value = np.asarray(value)
        super().__init__(shape=tuple(value.shape))
        self.value = value                      # checked: a read-only float32 copy

    @classmethod
    def param_shapes(cls, attrs):
        return {"value": tuple(attrs["shape"])}

    @classmethod
    def init_params(cls, attrs):
        return {}

    @classmethod
    def infer(cls, attrs, inputs):
        return TensorType(tuple(attrs["shape"]))


class _Broadcasting(Layer):
    """Two inputs, NumPy/ONNX broadcasting; no arguments."""
    batch_independent = True
    arity = (2, 2)

    def __init__(self):
        super().__init__()

    @classmethod
    def infer(cls, attrs, inputs):
        return TensorType(broadcast_shape(inputs))


class Mul(_Broadcasting):
    """x · y element-wise, with broadcasting (a per-channel scale when y is a constant). No arguments."""
    prefix = "mul"
    constant_affine = "scale"


class Sub(_Broadcasting):
    """x − y element-wise, with broadcasting. No arguments."""
    prefix = "sub"
    linear = True


class Div(_Broadcasting):
    """x / y element-wise, with broadcasting. No arguments."""
    prefix = "div"


class Transpose(Layer):
    """Permute the axes, as ``torch.permute``: output axis i is input axis perm[i].

    Args:
        perm: a permutation of the input's axes.
    """
    prefix = "transpose"
    linear = True

    @classmethod
    def example(cls):
        return cls((0, 2, 3, 1)), [(None, 3, 4, 5)]

    def __init__(self, perm: tuple[int, ...]):
        super().__init__(perm=tuple(int(p) for p in perm))

    @classmethod
    def per_sample(cls, attrs, rank):
        return attrs["perm"][0] == 0

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        perm = attrs["perm"]
        if sorted(perm) != list(range(x.rank)):
            raise ShapeError(f"perm {list(perm)} is not a permutation of the axes of {x.describe()}")
        return TensorType(tuple(x.shape[p] for p in perm))


class Reshape(Layer):
    """ONNX's Reshape: the same elements, in order, in a new shape.

    Args:
        shape: the output shape; 0 copies the input's dim at the same index, one −1 is inferred, a name is
            a symbolic dim (so ``Reshape(("N", -1))`` flattens any batch).
    """
    batch_independent = True
    prefix = "reshape"
    linear = True
    reshape_like = True

    @classmethod
    def example(cls):
        return cls((0, 5, 12)), [(None, 3, 4, 5)]

    def __init__(self, shape: tuple[int | str, ...]):
        super().__init__(shape=tuple(d if isinstance(d, str) else int(d) for d in shape))

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        target = list(attrs["shape"])
        for index, dim in enumerate(target):
            if dim == 0:
                if index >= x.rank:
                    raise ShapeError(f"shape {list(target)}: 0 at index {index} copies no dim of {x.describe()}")
                target[index] = x.shape[index]
            elif isinstance(dim, int) and dim < -1:
                raise ShapeError(f"shape {list(target)} has the invalid dim {dim}")
        if target.count(-1) > 1:
            raise ShapeError(f"shape {list(attrs['shape'])} has more than one -1")
        number, names = _split(x.shape)
        known_number, known_names = _split([d for d in target if d != -1])
        problem = f"cannot reshape {x.describe()} to {list(attrs['shape'])}"
        if -1 in target:
            rest = list(names)
            for name in known_names:
                if name not in rest:
                    raise ShapeError(problem)
                rest.remove(name)
            if known_number == 0 or number % known_number:
                raise ShapeError(problem)
            target[target.index(-1)] = product([number // known_number, *rest])
        elif (number, names) != (known_number, known_names):
            raise ShapeError(problem)
        return TensorType(tuple(target))


class MatMul(Layer):
    """NumPy's matmul of two values (batched, broadcasting); a product with a constant matrix is a Linear.
    No arguments."""
    prefix = "matmul"
    arity = (2, 2)

    @classmethod
    def example(cls):
        return cls(), [(None, 3, 4), (None, 4, 5)]

    def __init__(self):
        super().__init__()

    @classmethod
    def infer(cls, attrs, inputs):
        a, b = inputs
        if a.rank < 1 or b.rank < 1:
            raise ShapeError(f"cannot multiply scalars: {a.describe()} and {b.describe()}")
        a_shape = a.shape if a.rank > 1 else (1, *a.shape)
        b_shape = b.shape if b.rank > 1 else (*b.shape, 1)
        if a_shape[-1] != b_shape[-2]:
            raise ShapeError(f"inner dims differ: {a.describe()} times {b.describe()}")
        batch = broadcast_shape([Operand(a.name, TensorType(a_shape[:-2])), Operand(b.name, TensorType(b_shape[:-2]))])
        shape = (*batch, *(a_shape[-2:-1] if a.rank > 1 else ()), *(b_shape[-1:] if b.rank > 1 else ()))
        return TensorType(shape)

    @classmethod
    def macs(cls, attrs, inputs, output):
        a, _ = inputs
        count = product([*output.shape[1:], a.shape[-1]]) if output.rank > 1 else a.shape[-1]
        return count if isinstance(count, int) else 0


__all__ = ["Constant", "Mul", "Sub", "Div", "Transpose", "Reshape", "MatMul"]


# --- ONNX export -----------------------------------------------------------------------------------------------
@exports("Constant")
def _constant_to_onnx(e, n):
    """An initializer under the node's name (an Identity of one when the constant is a graph output)."""
    if n.name in e.graph.outputs:
        e.emit(n, "Identity", [e.param(n, "value")])
    else:
        e.named_initializer(n.name, n.params["value"])


exports("Mul")(emit_as("Mul"))
exports("Sub")(emit_as("Sub"))
exports("Div")(emit_as("Div"))
exports("MatMul")(emit_as("MatMul"))


@exports("Transpose")
def _transpose_to_onnx(e, n):
    e.emit(n, "Transpose", n.inputs, perm=list(n.attrs["perm"]))


@exports("Reshape")
def _reshape_to_onnx(e, n):
    """Reshape to our inferred shape: static dims written, a symbolic dim at the input's index copied (0), one
    other symbolic dim inferred (-1); a hard-coded batch would be pytorch #41893."""
    in_shape, out_shape = e.graph.type_of(n.inputs[0]).shape, n.type.shape
    target = [d if isinstance(d, int) else 0 if i < len(in_shape) and in_shape[i] == d else -1
              for i, d in enumerate(out_shape)]
    if target.count(-1) > 1 or 0 in [d for d in out_shape if isinstance(d, int)]:
        raise ExportError(f"{n.label()}: cannot write the reshape to {list(out_shape)} as one ONNX Reshape")
    e.emit(n, "Reshape", [n.inputs[0], e.int64(n, "shape", target)])


# --- ONNX import -----------------------------------------------------------------------------------------------
# How the importer reads the ONNX ops that become this family's layers (cnngraph/onnx/mapping.py); one
# ONNX node, one node of ours.


@imports("Transpose")
def _transpose(imp, node):
    x = imp.value(node.input[0])
    perm = imp.attrs(node).get("perm") or list(reversed(range(len(imp.shape(x)))))
    imp.add(node, "Transpose", [x], dict(perm=tuple(int(p) for p in perm)))


@imports("Reshape")
def _reshape(imp, node):
    x = imp.value(node.input[0])
    if node.input[1] not in imp.consts:
        raise Unsupported("the target shape is computed from values, not from shapes")
    target = [t if isinstance(t, str) else int(t) for t in imp.consts[node.input[1]].reshape(-1)]
    if imp.attrs(node).get("allowzero", 0) and 0 in target:          # without a 0, allowzero changes nothing
        raise Unsupported("allowzero = 1 with a 0 in the shape (an empty tensor)")
    imp.add(node, "Reshape", [x], dict(shape=tuple(target)))


@imports("Squeeze", "Unsqueeze")
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


for _onnx_op in ("MatMul", "Mul", "Sub", "Div"):
    imports(_onnx_op)(binary(_onnx_op))


# --- gradients -------------------------------------------------------------------------------------------------
# (x · y)' = ∂z·y and ∂z·x, each summed down to its operand's shape; a reshape's gradient is the reshape back.
@gradient("Mul")
def _mul_gradient(b, node, dy):
    from .structure import reduce_to
    x, y = node.inputs
    return {0: reduce_to(b, node, "0", b.add(node, "0.product", "Mul", [dy, y]), x),
            1: reduce_to(b, node, "1", b.add(node, "1.product", "Mul", [dy, x]), y)}


@gradient("Reshape")
def _reshape_gradient(b, node, dy):
    from .structure import reshape_back
    return {0: reshape_back(b, node, dy)}


@gradient("Constant")
def _constant_gradient(b, node, dy):
    return {}


def _scaled(b, node, tag: str, dy: str, value) -> str:
    """dy times a constant (a scalar or an array broadcasting against dy), as Constant + Mul."""
    value = np.asarray(value, np.float32)
    constant = b.add(node, f"{tag}.constant", "Constant", [], {"value": value}, shape=tuple(value.shape))
    return b.add(node, tag, "Mul", [dy, constant])


@gradient("Sub")
def _sub_gradient(b, node, dy):
    from .structure import reduce_to
    x, y = node.inputs
    return {0: reduce_to(b, node, "0", dy, x), 1: reduce_to(b, node, "1", _scaled(b, node, "1.negated", dy, -1.0), y)}


@gradient("Div")
def _div_gradient(b, node, dy):
    """z = x / y:  ∂x = ∂z / y,  ∂y = −∂z·z / y."""
    from .structure import reduce_to
    x, y = node.inputs
    over_y = b.add(node, "0.quotient", "Div", [dy, y])
    times_z = b.add(node, "1.product", "Mul", [over_y, node.name])
    return {0: reduce_to(b, node, "0", over_y, x), 1: reduce_to(b, node, "1", _scaled(b, node, "1.negated", times_z, -1.0), y)}


@gradient("Transpose")
def _transpose_gradient(b, node, dy):
    return {0: b.add(node, "x", "Transpose", [dy], perm=tuple(int(i) for i in np.argsort(node.attrs["perm"])))}


@gradient("ReduceMean")
def _reduce_mean_gradient(b, node, dy):
    """Each input element gets ∂y/count of its reduced group: ∂y reshaped to keep the reduced axes, times a
    constant 1/count of the input's shape (1 along the symbolic axes, which must not be reduced)."""
    from ..errors import GraphError
    x = b.shape(node.inputs[0])
    axes = node.layer.axes(node.attrs, len(x))
    if any(isinstance(x[i], str) for i in axes):
        raise GraphError(f"{node.label()}: no gradient rule for a mean over a symbolic axis")
    count = int(np.prod([x[i] for i in axes]))
    kept = b.add(node, "x.kept", "Reshape", [dy], shape=tuple(1 if i in axes else d for i, d in enumerate(x)))
    spread = np.full([1 if isinstance(d, str) else d for d in x], 1.0 / count, np.float32)
    return {0: _scaled(b, node, "x", kept, spread)}


@gradient("MatMul")
def _matmul_gradient(b, node, dy):
    """Y = A·B over the last two axes (1-D operands promoted as NumPy does): ∂A = ∂Y·Bᵀ, ∂B = Aᵀ·∂Y, each summed
    down to its operand's (broadcast) batch shape."""
    a, bb = node.inputs
    sa, sb = b.shape(a), b.shape(bb)
    a2 = a if len(sa) > 1 else b.add(node, "0.matrix", "Reshape", [a], shape=(1, *sa))
    b2 = bb if len(sb) > 1 else b.add(node, "1.matrix", "Reshape", [bb], shape=(*sb, 1))
    y2 = (*b.shape(dy)[:len(b.shape(dy)) - (len(sa) > 1) - (len(sb) > 1)], *(sa[-2:-1] if len(sa) > 1 else (1,)),
          *(sb[-1:] if len(sb) > 1 else (1,)))
    dy2 = dy if tuple(y2) == tuple(b.shape(dy)) else b.add(node, "y.matrix", "Reshape", [dy], shape=y2)

    def swapped(value, tag):
        rank = len(b.shape(value))
        return b.add(node, tag, "Transpose", [value], perm=(*range(rank - 2), rank - 1, rank - 2))

    grads = {}
    for i, (shape, operands, two_d) in enumerate(((sa, [dy2, swapped(b2, "0.bt")], b.shape(a2)),
                                                  (sb, [swapped(a2, "1.at"), dy2], b.shape(b2)))):
        full = b.add(node, f"{i}.product", "MatMul", operands)
        if b.shape(full) != two_d:
            full = b.add(node, f"{i}.summed", "SumToShape", [full], shape=two_d)
        grads[i] = full if len(shape) > 1 else b.add(node, str(i), "Reshape", [full], shape=shape)
    return grads
