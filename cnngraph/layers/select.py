"""Where with a constant condition: a fixed element-wise choice between two values.

Exporters write ``torch.where(mask, x, y)`` with a mask known when the model is exported (a causal or
padding mask, a masked_fill); cnngraph's values are float32, so the condition is the layer's parameter,
never a computed value (a computed condition is refused at import, naming the node). A condition that is
all true or all false is no choice at all: the importer then reads the chosen operand itself.
"""
from __future__ import annotations

import numpy as np

from ..layer import Layer, Operand
from ..onnx.handler_tools import Unsupported
from ..onnx.mapping import exports, imports
from ..shapes import TensorType
from .structure import broadcast_shape


class Where(Layer):
    """``torch.where(condition, input, other)`` with a constant condition: input where it is true, other where
    false, all three broadcast together (NumPy/ONNX rules).

    Args:
        condition: the mask, any shape that broadcasts with both inputs; stored as parameter ``condition``
            (float32, 1 for true, 0 for false).
    """
    prefix = "where"
    arity = (2, 2)
    buffers = ("condition",)           # a constant mask, not learned: an optimizer never updates it

    @classmethod
    def example(cls):
        return cls(np.array([[True, False, True, False, True]] * 4)), [(None, 3, 4, 5), (None, 3, 4, 5)]

    def __init__(self, condition):
        condition = np.asarray(condition)
        super().__init__(condition_shape=tuple(int(d) for d in condition.shape))
        self.condition = (condition != 0).astype(np.float32)

    @classmethod
    def param_shapes(cls, attrs):
        return {"condition": tuple(attrs["condition_shape"])}

    @classmethod
    def init_params(cls, attrs):
        return {"condition": np.ones(attrs["condition_shape"], np.float32)}

    @classmethod
    def per_sample(cls, attrs, rank):
        shape = attrs["condition_shape"]
        return len(shape) < rank or shape[0] == 1

    @classmethod
    def summary(cls, attrs):
        return f"mask {tuple(attrs['condition_shape'])}"

    @classmethod
    def infer(cls, attrs, inputs):
        mask = Operand("condition", TensorType(tuple(attrs["condition_shape"])))
        return TensorType(broadcast_shape([mask, *inputs]))


__all__ = ["Where"]


# --- ONNX export -----------------------------------------------------------------------------------------------
@exports("Where")
def _where_to_onnx(e, n):
    """The condition as a bool initializer: one ONNX node."""
    e.emit(n, "Where", [e.param(n, "condition", n.params["condition"] != 0), *n.inputs])


# --- ONNX import -----------------------------------------------------------------------------------------------
@imports("Where")
def _where_from_onnx(imp, node):
    """A constant condition becomes the layer's mask, or, when uniform and the chosen operand already has the
    output's shape, that operand itself (an Identity). Where on constants only is folded before this runs."""
    if node.input[0] not in imp.consts:
        raise Unsupported("the condition is computed; cnngraph selects with constant conditions only")
    condition = imp.const(node.input[0], "the condition")
    x, y = imp.operand(node.input[1]), imp.operand(node.input[2])
    mask = Operand("condition", TensorType(condition.shape))
    shape = broadcast_shape([mask, *(Operand(v, imp.graph.type_of(v)) for v in (x, y))])
    if condition.size and (condition.all() or not condition.any()):
        chosen = x if condition.all() else y
        if imp.shape(chosen) == shape:
            imp.add(node, "Identity", [chosen])
            return
    imp.add(node, "Where", [x, y], dict(condition_shape=condition.shape), dict(condition=(condition != 0).astype(np.float32)))


# --- gradient --------------------------------------------------------------------------------------------------
# ∂input = where(condition, ∂y, 0), ∂other = where(condition, 0, ∂y), each summed down to its operand's shape;
# the condition is a constant: it gets none.
from ..autodiff.registry import gradient  # noqa: E402


@gradient("Where")
def _where_gradient(b, node, dy):
    from .structure import reduce_to
    zero = b.add(node, "zero", "Constant", [], {"value": np.zeros((), np.float32)}, shape=())
    mask = {"condition": node.params["condition"]}
    picks = {0: [dy, zero], 1: [zero, dy]}
    return {i: reduce_to(b, node, str(i), b.add(node, f"{i}.picked", "Where", picks[i], mask, **node.attrs), value)
            for i, value in enumerate(node.inputs)}
