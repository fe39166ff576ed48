"""What the ONNX spec says a node may be, checked before the importer maps or folds it.

onnx.checker validates arities and attribute names but not what a hostile or mangled file can still get
wrong, each of which once reached the importer:
  * the opset: 1 and 99 were accepted and read with the forms of other opsets;
  * input types: a float initializer relabelled INT32 passes the checker and its bytes were read as integers
    (a bias of ±1e9). Each input's dtype is checked against the op's type constraints, and inputs sharing a
    type variable (Conv's X, W and B are all T) must agree;
  * flags: transB = 2**62 is true for Python and false for onnxruntime (which casts it to a 32-bit int);
  * sizes: kernel, stride, dilation and pad attributes of 2**31 or more; auto_pad with explicit pads;
  * coefficients (alpha, beta, epsilon...) that are nan or infinite: no two runtimes agree on what they give.
Each check raises OnnxImportError with a message the importer prefixes with the model and the node.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, defs, helper

from ..errors import OnnxImportError
from .fold import MAX_ELEMENTS

# Below 7, element-wise ops broadcast only with broadcast=1 along an ``axis`` (not NumPy-style) and
# BatchNormalization/Dropout read is_test: forms the importer does not read. From 7 on, every op it maps
# has the forms it reads (opsets 7 and 8 are tested on light-zoo models converted down by onnx).
MIN_OPSET = 7
FLAGS = ("transA", "transB", "ceil_mode", "count_include_pad", "storage_order", "keepdims", "noop_with_empty_axes",
         "allowzero", "training_mode", "spatial")
SIZES = ("kernel_shape", "strides", "dilations", "pads", "group", "size", "output_padding", "output_shape")
POSITIVE = ("kernel_shape", "strides", "dilations", "group", "size")
AUTO_PAD = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
CHECKED = frozenset(FLAGS + SIZES + ("auto_pad",))
VALUES = ("value", "value_float", "min", "max")   # float attributes that are values (a -inf fill), not coefficients


def newest_opset() -> int:
    return defs.onnx_opset_version()


def check_opset(model: onnx.ModelProto, where: str) -> int:
    """The version of the standard ONNX domain the model imports, refused outside MIN_OPSET..newest_opset()."""
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise OnnxImportError(f"{where}: the model imports no version of the standard ONNX domain")
    opset, newest = versions[0], newest_opset()
    if not MIN_OPSET <= opset <= newest:
        raise OnnxImportError(f"{where}: opset {opset} of the standard ONNX domain is not one cnngraph imports "
                              f"({MIN_OPSET} to {newest}, the newest the installed onnx {onnx.__version__} knows)")
    return opset


# --- types -----------------------------------------------------------------------------------------------------
@functools.cache
def type_name(dtype: np.dtype) -> str:
    """ONNX's name of a NumPy dtype, as in type constraints: float32 -> 'tensor(float)'. Object arrays are
    shapes holding a symbolic dimension: int64."""
    if dtype.kind == "O":
        return "tensor(int64)"
    try:
        code = helper.np_dtype_to_tensor_dtype(dtype)
    except (KeyError, ValueError, TypeError):
        return f"numpy {dtype}"
    return f"tensor({TensorProto.DataType.Name(code).lower()})"


def _short(name: str) -> str:
    return name[len("tensor("):-1] if name.startswith("tensor(") else name


@functools.cache
def _formals(op_type: str, opset: int):
    """The op's inputs at this opset as (type string, variadic, homogeneous), and {type variable: allowed type
    strings}; None for an op onnx does not know (the importer lists it as unsupported)."""
    try:
        schema = defs.get_schema(op_type, opset, "")
    except defs.SchemaError:
        return None
    inputs = tuple((p.type_str, p.option == defs.OpSchema.FormalParameterOption.Variadic, p.is_homogeneous)
                   for p in schema.inputs)
    allowed = {c.type_param_str: frozenset(c.allowed_type_strs) for c in schema.type_constraints}
    return inputs, allowed


def check_input_types(node, types: list, opset: int) -> None:
    """Each present input's type (a type_name, or None where unknown) against the op's constraints."""
    problem = _type_problem(node.op_type, opset, tuple(types))
    if problem is None:
        return
    index, type_str, expected, other = problem
    name, found = node.input[index], _short(types[index])
    if other is None:
        raise OnnxImportError(f"input {index} ({name!r}) is {found}; {node.op_type} takes {expected} there")
    raise OnnxImportError(f"input {index} ({name!r}) is {found} but input {other} ({node.input[other]!r}) is "
                          f"{expected}; {node.op_type} needs both of one type ({type_str})")


@functools.cache
def _type_problem(op_type: str, opset: int, types: tuple):
    """The first input whose type the op refuses, as (index, type variable, what was expected, the input it
    disagrees with or None); None when all fit. Cached: a model repeats a few (op, types) pairs many times."""
    formals = _formals(op_type, opset)
    if formals is None:
        return None
    inputs, allowed = formals
    bound: dict[str, tuple[str, int]] = {}
    for index, found in enumerate(types):
        if found is None or not inputs or (index >= len(inputs) and not inputs[-1][1]):
            continue
        type_str, variadic, homogeneous = inputs[min(index, len(inputs) - 1)]
        options = allowed.get(type_str, frozenset({type_str}))
        if found not in options:
            return index, type_str, ", ".join(sorted(_short(t) for t in options)), None
        if type_str in allowed and (homogeneous or not variadic):
            first = bound.setdefault(type_str, (found, index))
            if first[0] != found:
                return index, type_str, _short(first[0]), first[1]
    return None


# --- attributes ------------------------------------------------------------------------------------------------
def check_attributes(node) -> None:
    """Flags are 0 or 1; sizes within MAX_ELEMENTS, kernels, strides, dilations and groups at least 1 and
    window pads at least 0 (before any arithmetic divides by them); auto_pad one of its four values, never
    with pads."""
    for attr in node.attribute:
        if attr.type == AttributeProto.FLOAT and attr.name not in VALUES and not math.isfinite(attr.f):
            raise OnnxImportError(f"attribute {attr.name} = {attr.f}: a coefficient must be finite")
    given = {a.name: _value(a) for a in node.attribute if a.name in CHECKED}
    for key, value in given.items():
        if key in FLAGS:
            if value not in (0, 1):
                raise OnnxImportError(f"attribute {key} = {value!r}: a flag must be 0 or 1")
        elif key != "auto_pad":
            _check_sizes(node, key, [value] if isinstance(value, int) else value)
    if "auto_pad" in given:
        mode = given["auto_pad"]
        mode = mode.decode(errors="replace") if isinstance(mode, bytes) else str(mode)
        if mode not in AUTO_PAD:
            raise OnnxImportError(f"attribute auto_pad = {mode!r}: not one of {', '.join(AUTO_PAD)}")
        if mode != "NOTSET" and "pads" in given:
            raise OnnxImportError(f"auto_pad {mode} and explicit pads {given['pads']}: ONNX allows one or the other")


def _check_sizes(node, key: str, values) -> None:
    if not isinstance(values, list) or not values or not all(isinstance(v, int) for v in values):
        return
    low, high = min(values), max(values)
    if max(high, -low) > MAX_ELEMENTS:
        raise OnnxImportError(f"attribute {key} = {values}: larger than 2**{MAX_ELEMENTS.bit_length() - 1}, the most "
                              f"cnngraph allows for any size")
    if low < 1 and key in POSITIVE:
        raise OnnxImportError(f"attribute {key} = {values}: each must be at least 1")
    if low < 0 and key == "pads" and node.op_type != "Pad":
        raise OnnxImportError(f"attribute pads = {values}: a window's pads must be at least 0")


def _value(attr):
    """An INT, INTS or STRING attribute's value (what the checks read), faster than helper.get_attribute_value."""
    if attr.type == AttributeProto.INT:
        return attr.i
    if attr.type == AttributeProto.INTS:
        return list(attr.ints)
    return attr.s if attr.type == AttributeProto.STRING else helper.get_attribute_value(attr)


__all__ = ["MIN_OPSET", "newest_opset", "check_opset", "type_name", "check_input_types", "check_attributes"]
