"""Constant folding at import: evaluate ONNX nodes whose inputs are all known.

Exporters compute reshape targets at run time (Shape -> Gather -> Unsqueeze -> Concat -> Reshape) and older
models build their weights with ConstantOfShape. Folding those nodes to constants lets the importer see
plain layers. A shape may hold a symbolic dim (the batch): such arrays have dtype object and hold ``str``
entries ("N", "2*N"), and only the shape-plumbing ops below accept them; arithmetic on a symbolic dim is
exact or refused (symbolic.py).

Every result is checked against ``MAX_ELEMENTS`` before it is allocated, so a model cannot make the importer
build a huge array.
"""
from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from ..errors import CnnGraphError
from ..shapes import product
from . import batch_index, symbolic
from .shared import axis_index

MAX_ELEMENTS = 2 ** 28            # 1 GiB of float32: far beyond any weight a CNN layer has


class FoldError(Exception):
    """This node cannot be folded; the message says why."""


def check_elements(count, what: str) -> None:
    if count > MAX_ELEMENTS:
        raise FoldError(f"{what} would have {count} elements, more than the {MAX_ELEMENTS} cnngraph allows")


def is_symbolic(array: np.ndarray) -> bool:
    return array.dtype == object


def shape_array(shape) -> np.ndarray:
    """A value's shape as a Shape op returns it: int64, or object when some dim is symbolic."""
    if all(isinstance(d, int) for d in shape):
        return np.array(shape, dtype=np.int64)
    return np.array(list(shape), dtype=object)


def _ints(array: np.ndarray, what: str) -> list[int]:
    if is_symbolic(array):
        raise FoldError(f"{what} depends on a symbolic dimension")
    return [int(v) for v in np.asarray(array).reshape(-1)]


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _axes(node, inputs, opset, since: int, index: int = 1):
    """``axes`` from the attribute (before ``since``) or from input ``index`` (from ``since``); None if absent."""
    if opset < since:
        axes = _attrs(node).get("axes")
        return None if axes is None else [int(a) for a in axes]
    if len(inputs) > index and inputs[index] is not None:
        return _ints(inputs[index], "axes")
    return None


def _unsqueeze(node, inputs, opset):
    x = inputs[0]
    axes = _axes(node, inputs, opset, 13)
    rank = x.ndim + len(axes)
    for axis in sorted(axis_index(a, rank, "Unsqueeze's axis") for a in axes):
        x = np.expand_dims(x, axis)
    return x


def _squeeze(node, inputs, opset):
    axes = _axes(node, inputs, opset, 13)
    x = inputs[0]
    return np.squeeze(x, axis=None if axes is None else tuple(axis_index(a, x.ndim, "Squeeze's axis") for a in axes))


def _slice(node, inputs, opset):
    x = inputs[0]
    if opset < 10:
        a = _attrs(node)
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = _ints(inputs[1], "starts"), _ints(inputs[2], "ends")
        axes = _ints(inputs[3], "axes") if len(inputs) > 3 and inputs[3] is not None else list(range(len(starts)))
        steps = _ints(inputs[4], "steps") if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if step == 0:
            raise FoldError("Slice with step 0")
        index[axis_index(axis, x.ndim, "Slice's axis")] = slice(start, end, step)   # Python clamps as ONNX does
    return x[tuple(index)]


def _gather(node, inputs, opset):
    data, indices = inputs
    indices = np.asarray(_ints(indices, "indices"), dtype=np.int64).reshape(indices.shape)
    return np.take(data, indices, axis=axis_index(int(_attrs(node).get("axis", 0)), data.ndim, "Gather's axis"))


def _concat(node, inputs, opset):
    arrays = [a for a in inputs if a is not None]
    if any(is_symbolic(a) for a in arrays):
        arrays = [a.astype(object) for a in arrays]
    return np.concatenate(arrays, axis=int(_attrs(node)["axis"]))


def _cast(node, inputs, opset):
    x = inputs[0]
    dtype = helper.tensor_dtype_to_np_dtype(int(_attrs(node)["to"]))
    if is_symbolic(x):
        if dtype.kind not in "iu":
            raise FoldError("a cast of a symbolic dimension to a non-integer type")
        return x
    return x.astype(dtype)


def _constant_of_shape(node, inputs, opset):
    shape = _ints(inputs[0], "the shape")
    if min(shape, default=1) < 0:
        raise FoldError(f"negative dims {shape}")
    check_elements(int(np.prod(shape, dtype=object)), f"ConstantOfShape's output {shape}")
    value = _attrs(node).get("value")
    fill = numpy_helper.to_array(value).reshape(-1)[0] if value is not None else np.float32(0)
    return np.full(shape, fill, dtype=np.asarray(fill).dtype)


def _reshape(node, inputs, opset):
    x, target = inputs[0], _ints(inputs[1], "the target shape")
    allow_zero = _attrs(node).get("allowzero", 0)
    target = [x.shape[i] if t == 0 and not allow_zero else t for i, t in enumerate(target)]
    return x.reshape(target)


def _arithmetic(ufunc, on_symbols=None):
    """A binary op; on shapes holding a symbolic dim, ``on_symbols`` per element (symbolic.py), exact or refused."""
    def fold(node, inputs, opset):
        a, b = inputs
        if is_symbolic(a) or is_symbolic(b):
            if on_symbols is None:
                raise FoldError("arithmetic on a symbolic dimension")
            try:
                return symbolic.settle(symbolic.elementwise(on_symbols, a, b))
            except symbolic.SymbolicError as error:
                raise FoldError(str(error)) from None
        return ufunc(a, b).astype(np.result_type(a, b))
    return fold


def _equal(node, inputs, opset):
    """Equal on a shape: exporters test a dim against 0 or -1 before a Where (symbolic.equal says when known)."""
    if not any(is_symbolic(a) for a in inputs):
        return _evaluate(node, inputs, opset)[0]
    try:
        return symbolic.elementwise(symbolic.equal, *inputs, dtype=bool)
    except symbolic.SymbolicError as error:
        raise FoldError(str(error)) from None


def _where(node, inputs, opset):
    """Where choosing between shapes: the condition must be known, the chosen dims may be symbolic."""
    condition, a, b = inputs
    if not (is_symbolic(a) or is_symbolic(b)):
        return _evaluate(node, inputs, opset)[0]
    return symbolic.settle(np.where(np.asarray(_ints(condition, "the condition"), bool).reshape(condition.shape),
                                    np.asarray(a, dtype=object), np.asarray(b, dtype=object)))


def _reduce_prod(node, inputs, opset):
    x = inputs[0]
    if is_symbolic(x):
        if x.ndim != 1 or not _attrs(node).get("keepdims", 1) or (len(inputs) > 1 and inputs[1] is not None):
            raise FoldError("a product of symbolic dims other than over a whole 1-D shape")
        return np.array([product(list(x))], dtype=object)
    axes = _axes(node, inputs, opset, 18)
    return np.prod(x, axis=None if not axes else tuple(axes), keepdims=bool(_attrs(node).get("keepdims", 1)),
                   dtype=x.dtype)


def _range(node, inputs, opset):
    if any(is_symbolic(a) or np.asarray(a).size != 1 for a in inputs):
        raise FoldError("Range's start, limit and delta must be numbers (scalars), not symbolic dimensions")
    start, limit, delta = (np.asarray(a).reshape(()) for a in inputs)
    if delta == 0:
        raise FoldError("Range with delta 0")
    check_elements(max(0, int(np.ceil((limit - start) / delta))), "Range's output")
    return np.arange(start, limit, delta, dtype=start.dtype)


def _expand(node, inputs, opset):
    x, shape = inputs[0], _ints(inputs[1], "the shape")
    out = np.broadcast_shapes(x.shape, tuple(shape))
    check_elements(int(np.prod(out, dtype=object)), f"Expand's output {list(out)}")
    return np.broadcast_to(x, out).copy()


def _tile(node, inputs, opset):
    x, repeats = inputs[0], _ints(inputs[1], "repeats")
    check_elements(x.size * int(np.prod(repeats, dtype=object)), "Tile's output")
    return np.tile(x, repeats)


FOLDERS = {
    "Identity": lambda node, inputs, opset: inputs[0],
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Slice": _slice,
    "Gather": _gather,
    "Concat": _concat,
    "Cast": _cast,
    "ConstantOfShape": _constant_of_shape,
    "Reshape": _reshape,
    "Mul": _arithmetic(np.multiply, symbolic.multiply),
    "Add": _arithmetic(np.add, symbolic.add),
    "Sub": _arithmetic(np.subtract, symbolic.subtract),
    "Div": _arithmetic(lambda a, b: np.floor_divide(a, b) if np.asarray(a).dtype.kind in "iu" else a / b,
                       symbolic.floor_divide),
    "Equal": _equal,
    "Where": _where,
    "ReduceProd": _reduce_prod,
    "Range": _range,
    "Expand": _expand,
    "Tile": _tile,
}
NOT_FOLDED = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}


def _array(result) -> np.ndarray:
    """NumPy hands back a lone symbolic dim as a str (np.take of one entry): keep it an object array."""
    array = np.asarray(result)
    return array.astype(object) if array.dtype.kind in "US" else array


def fold(node, inputs: list, opset: int) -> list[np.ndarray]:
    """The outputs of ``node`` given its inputs (arrays, None for an omitted optional input)."""
    if node.op_type in NOT_FOLDED:
        raise FoldError("a random op")
    if batch_index.applies(node, inputs):              # index arithmetic on a Range over the symbolic batch
        try:
            return [batch_index.fold(node, inputs, opset)]
        except batch_index.BatchIndexError as error:
            raise FoldError(str(error)) from None
    folder = FOLDERS.get(node.op_type)
    if folder is not None:
        try:
            return [_array(folder(node, inputs, opset))]
        except (FoldError, CnnGraphError):
            raise
        except Exception as error:                   # a malformed node: numpy's message says what is wrong
            raise FoldError(f"cannot evaluate it: {error}") from None
    if any(a is not None and is_symbolic(a) for a in inputs):
        raise FoldError("needs the value of a symbolic dimension")
    return _evaluate(node, inputs, opset)


def _evaluate(node, inputs, opset) -> list[np.ndarray]:
    """Any other op on numeric constants, by onnx's reference implementation (one node at a time)."""
    from onnx.reference import ReferenceEvaluator
    names = [f"in{i}" if a is not None else "" for i, a in enumerate(inputs)]
    outputs = [f"out{i}" for i in range(len(node.output))]
    clone = helper.make_node(node.op_type, names, outputs, domain=node.domain)
    clone.attribute.extend(node.attribute)
    graph = helper.make_graph([clone], "fold", [], [helper.make_empty_tensor_value_info(o) for o in outputs],
                              initializer=[numpy_helper.from_array(np.asarray(a), n)
                                           for n, a in zip(names, inputs) if a is not None])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:
        results = ReferenceEvaluator(model).run(None, {})
    except Exception as error:
        raise FoldError(f"cannot evaluate it on its constant inputs: {str(error).splitlines()[0][:200]}") from None
    for result in results:
        check_elements(np.asarray(result).size, f"{node.op_type}'s output")
    return [np.asarray(r) for r in results]


__all__ = ["fold", "FoldError", "shape_array", "is_symbolic", "check_elements", "MAX_ELEMENTS"]
