"""Where an op's gradient rule is declared: next to the op, in its family module (cnngraph/layers/*.py).

A rule receives the backward builder, the forward node and the name of the value holding ∂loss/∂output, and
adds the nodes that compute the gradients of the node's data inputs and parameters, in the IR:

    @gradient("ReLU")                     # our op -> fn(builder, node, dy) -> {input index or param: value}
    def _relu_gradient(b, node, dy):
        return {0: b.add(node, "x", "ActivationGrad", [node.name, dy], activation=b.activation_of(node))}

Keys are the index of a data input (0, 1, ...) or a parameter name ("weight"); a missing key means no
gradient flows there (a buffer such as BatchNorm's running statistics, a constant). Like mapping.py, this
module imports nothing heavy, so declaring a rule costs ``import cnngraph`` nothing.
"""
from __future__ import annotations

from collections.abc import Callable

GRADIENTS: dict[str, Callable] = {}      # our op name -> fn(builder, node, dy) -> dict


def gradient(*ops: str):
    """Declare the gradient rule of our ops ``ops``."""
    def decorate(function):
        for op in ops:
            if op in GRADIENTS:
                raise ValueError(f"the gradient of {op!r} is declared twice ({GRADIENTS[op].__module__} and "
                                 f"{function.__module__})")
            GRADIENTS[op] = function
        return function
    return decorate


def from_trait(kind: str) -> str:
    """The registry key of the rule shared by every element-wise op whose ``derivative_from`` is ``kind``
    (no op name has a space, so it cannot clash)."""
    return f"derivative from its {kind}"


def rule_for(layer):
    """The op's own rule, else the one its ``derivative_from`` trait gives, else None."""
    return GRADIENTS.get(layer.op) or (GRADIENTS.get(from_trait(layer.derivative_from)) if layer.derivative_from
                                       else None)


def no_gradient_needed(builder, node, dy) -> dict:
    """The rule of ops whose output does not depend on anything learnable or fed (Constant)."""
    return {}
