"""The gradient op of the per-sample normalisations, LayerNorm, GroupNorm and InstanceNorm1d/2d/3d (training
graphs only; their rules are declared in sample_norm.py).

Each standardises rows of a 2-D view of x (one row per normalised group) and applies an affine map that
broadcasts against x. With x̂ = (x − mean)/√(var + eps) per row, g = ∂y·weight (∂y without an affine map):
    ∂x = (g − mean(g) − x̂·mean(g·x̂)) / √(var + eps)        (means along the row)
    ∂weight = Σ ∂y·x̂,  ∂bias = Σ ∂y                      (sums over every axis the affine map broadcasts along)
"""
from __future__ import annotations

from ..errors import ShapeError
from ..layer import REGISTRY, Layer
from ..shapes import TensorType

NORMS = ("LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d")


class SampleNormGrad(Layer):
    """∂L/∂x (``wrt="x"``) or ∂L/∂weight (``wrt="weight"``) of a LayerNorm, GroupNorm or InstanceNorm from its
    input x and ∂L/∂y: inputs (x, dy); output of x's shape, or of the weight's. Parameters: the norm's own
    (weight, bias; none without an affine map).

    Args:
        norm: the normalisation differentiated, ``{"op": "GroupNorm", "attrs": {...}}``.
        wrt: "x" or "weight".
    """
    prefix = "dnorm"
    arity = (2, 2)
    training_only = True
    WRT = ("x", "weight")

    @classmethod
    def per_sample(cls, attrs, rank):
        return attrs["wrt"] == "x"                 # ∂weight sums over the batch

    @classmethod
    def example(cls):
        return cls({"op": "GroupNorm", "attrs": {"num_groups": 2, "num_channels": 4, "eps": 1e-5, "affine": True}},
                   "weight"), [(None, 4, 3, 5), (None, 4, 3, 5)]

    def __init__(self, norm: dict, wrt: str = "x"):
        if wrt not in self.WRT:
            raise ValueError(f"SampleNormGrad: wrt must be one of {self.WRT}, got {wrt!r}")
        super().__init__(norm={"op": norm["op"], "attrs": dict(norm["attrs"])}, wrt=wrt)

    @classmethod
    def _norm(cls, attrs):
        if attrs["norm"]["op"] not in NORMS:
            raise ShapeError(f"SampleNormGrad differentiates {', '.join(NORMS)}, not {attrs['norm']['op']!r}")
        return REGISTRY[attrs["norm"]["op"]]

    @classmethod
    def param_shapes(cls, attrs):
        return cls._norm(attrs).param_shapes(attrs["norm"]["attrs"])

    @classmethod
    def init_params(cls, attrs):
        return cls._norm(attrs).init_params(attrs["norm"]["attrs"])

    @classmethod
    def infer(cls, attrs, inputs):
        x, dy = inputs
        cls._norm(attrs).infer(attrs["norm"]["attrs"], [x])
        if x.shape != dy.shape:
            raise ShapeError(f"x {x.describe()} and dy {dy.describe()} must have the same shape")
        if attrs["wrt"] == "x":
            return x.type
        shapes = cls.param_shapes(attrs)
        if "weight" not in shapes:
            raise ShapeError(f"{attrs['norm']['op']} without an affine map has no weight")
        return TensorType(shapes["weight"])
