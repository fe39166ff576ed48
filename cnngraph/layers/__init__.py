"""The layer catalogue: importing this package registers every op, and exports each family's layers by name
(cnngraph.ReLU, ...): a new layer class in a family module is exported without a change here."""
from ..layer import REGISTRY
from . import (
    activations,
    adaptive_pooling,
    conv,
    conv_transpose,
    linear,
    losses,
    math_ops,
    modern_activations,
    normalization,
    padding,
    pool_gradients,
    pooling,
    reductions,
    repeat,
    resample,
    sample_norm,
    select,
    slicing,
    structure,
    tensor_ops,
)

FAMILIES = (
    activations,
    adaptive_pooling,
    conv,
    conv_transpose,
    linear,
    normalization,
    pooling,
    pool_gradients,
    sample_norm,
    structure,
    tensor_ops,
    padding,
    reductions,
    select,
    resample,
    slicing,
    repeat,
    losses,
    math_ops,
    modern_activations,
)

_layers = {cls.__name__: cls for family in FAMILIES for cls in vars(family).values()
           if isinstance(cls, type) and cls.__module__ == family.__name__ and REGISTRY.get(cls.op) is cls}
globals().update(_layers)
__all__ = list(_layers)
