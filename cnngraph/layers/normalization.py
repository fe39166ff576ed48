"""BatchNorm2d at inference: y = (x − running_mean) / √(running_var + eps) · weight + bias, per channel; BatchNorm1d/3d,
the training mode and gradients; LocalResponseNorm."""
from __future__ import annotations

import numpy as np

from ..autodiff.registry import gradient
from ..errors import ExportError, OnnxImportError, ShapeError
from ..layer import Layer
from ..onnx.handler_tools import Unsupported, nice_float
from ..onnx.mapping import exports, imports
from ..shapes import TensorType


class BatchNorm2d(Layer):
    """Batch normalisation at inference, as ``torch.nn.BatchNorm2d`` in eval mode: per channel c,
    y = (x − running_mean[c]) / √(running_var[c] + eps) · weight[c] + bias[c]; input (N, num_features, ...),
    output of the same shape.

    Args:
        num_features: channels of the input (C).
        eps: added to the variance for numerical stability (default 1e-5).

    Parameters (each of shape (num_features,), float32; the running statistics are buffers in PyTorch and
    are not counted as learnable parameters):
        weight: γ, the scale (initially 1).
        bias: β, the shift (initially 0).
        running_mean: the mean subtracted (initially 0).
        running_var: the variance divided by (initially 1).
    """
    batch_independent = True
    prefix = "bn"
    linear = True
    channel_affine = True
    trains_on_batch_statistics = True   # train=True swaps it for BatchNorm2dTrain (BatchNorm1d/3d inherit it)
    buffers = ("running_mean", "running_var")

    @classmethod
    def example(cls):
        return cls(3), [(None, 3, 4, 5)]

    def __init__(self, num_features: int, eps: float = 1e-5):
        if num_features < 1 or eps < 0:
            raise ValueError("BatchNorm2d: num_features must be >= 1 and eps >= 0")
        super().__init__(num_features=int(num_features), eps=float(eps))

    @classmethod
    def param_shapes(cls, attrs):
        c = (attrs["num_features"],)
        return {"weight": c, "bias": c, "running_mean": c, "running_var": c}

    @classmethod
    def init_params(cls, attrs):
        c = attrs["num_features"]
        ones, zeros = np.ones(c, np.float32), np.zeros(c, np.float32)
        return {"weight": ones, "bias": zeros, "running_mean": zeros.copy(), "running_var": ones.copy()}

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        if x.rank < 2:
            raise ShapeError(f"expects an input (N, C, ...), got {x.describe()}")
        if x.shape[1] != attrs["num_features"]:
            raise ShapeError(f"expects {attrs['num_features']} channels, got {x.shape[1]} from {x.describe()}")
        return x.type

    @staticmethod
    def scale_shift(attrs, params) -> tuple[np.ndarray, np.ndarray]:
        """The per-channel affine map BatchNorm is at inference: y = x·scale + shift (computed in float64)."""
        inv_std = 1.0 / np.sqrt(params["running_var"].astype(np.float64) + attrs["eps"])
        scale = params["weight"] * inv_std
        shift = params["bias"] - params["running_mean"] * scale
        return scale, shift


# --- ONNX export -----------------------------------------------------------------------------------------------
@exports("BatchNorm2d")
def _batchnorm_to_onnx(e, n):
    params = [e.param(n, k) for k in ("weight", "bias", "running_mean", "running_var")]
    e.emit(n, "BatchNormalization", [n.inputs[0], *params], epsilon=n.attrs["eps"])


# --- BatchNorm1d and BatchNorm3d: BatchNorm2d's arithmetic on (N, C) / (N, C, L) and (N, C, D, H, W) ---------
class BatchNorm1d(BatchNorm2d):
    """Batch normalisation at inference, as ``torch.nn.BatchNorm1d`` in eval mode: input (N, num_features) or
    (N, num_features, L), output of the same shape; per channel c,
    y = (x − running_mean[c]) / √(running_var[c] + eps) · weight[c] + bias[c].

    Args:
        num_features: channels of the input (C).
        eps: added to the variance for numerical stability (default 1e-5).

    Parameters (each of shape (num_features,), float32; the running statistics are buffers):
        weight: γ (initially 1). bias: β (initially 0). running_mean (initially 0). running_var (initially 1).
    """
    ranks = (2, 3)

    @classmethod
    def example(cls):
        return cls(3), [(None, 3, 5)]

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        if x.rank not in cls.ranks:
            raise ShapeError(f"expects an input {' or '.join(f'{r}-D' for r in cls.ranks)}, got {x.describe()}")
        return super().infer(attrs, inputs)


class BatchNorm3d(BatchNorm1d):
    """Batch normalisation at inference, as ``torch.nn.BatchNorm3d`` in eval mode: input (N, num_features, D, H,
    W), output of the same shape; per channel c,
    y = (x − running_mean[c]) / √(running_var[c] + eps) · weight[c] + bias[c].

    Args:
        num_features: channels of the input (C).
        eps: added to the variance for numerical stability (default 1e-5).

    Parameters (each of shape (num_features,), float32; the running statistics are buffers):
        weight: γ (initially 1). bias: β (initially 0). running_mean (initially 0). running_var (initially 1).
    """
    ranks = (5,)

    @classmethod
    def example(cls):
        return cls(3), [(None, 3, 2, 3, 4)]


BATCHNORM_BY_RANK = {2: "BatchNorm1d", 3: "BatchNorm1d", 5: "BatchNorm3d"}     # other ranks: BatchNorm2d
exports("BatchNorm1d", "BatchNorm3d")(_batchnorm_to_onnx)


# --- ONNX import -----------------------------------------------------------------------------------------------
# How the importer reads the ONNX ops that become this family's layers (cnngraph/onnx/mapping.py); one
# ONNX node, one node of ours.


@imports("BatchNormalization")
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
    op = BATCHNORM_BY_RANK.get(len(imp.shape(x)), "BatchNorm2d")
    imp.add(node, op, [x], dict(num_features=int(weight.shape[0]), eps=nice_float(a.get("epsilon", 1e-5))),
            params)


# --- training mode and gradients -------------------------------------------------------------------------------
# Training mode normalises with the batch's statistics over (N, H, W): mean μ and the biased variance σ²
# (PyTorch's convention for normalising). BatchStats computes them once per step, as the mean and the unbiased
# variance the trainer updates the running statistics with (running = (1 − momentum)·running + momentum·batch,
# as PyTorch does); the normalisation and its gradient read that node instead of computing them again.
# With x̂ = (x − μ)/√(σ² + eps):  ∂β = Σ ∂y,  ∂γ = Σ ∂y·x̂,  and
#   eval:  ∂x = ∂y·γ/√(running_var + eps)
#   train: ∂x = γ/√(σ² + eps) · (∂y − ∂β/M − x̂·∂γ/M)   (M = N·H·W): ∂x reads ∂β and ∂γ, no reduction of its own
class _BatchNormTraining(Layer):
    """Shared schema: BatchNorm2d's attributes and parameters, channel axis 1."""
    prefix = "bn"
    training_only = True

    param_shapes = BatchNorm2d.param_shapes
    init_params = BatchNorm2d.init_params


def _check_stats(stats: TensorType, x: TensorType) -> None:
    if stats.shape != (2, x.shape[1]):
        raise ShapeError(f"batch statistics {stats.describe()} must be (2, C) for the input {x.describe()}")


class BatchNorm2dTrain(_BatchNormTraining):
    """BatchNorm2d in training mode (training graphs only): y = (x − μ_batch)/√(σ²_batch + eps)·weight + bias,
    statistics over every axis but 1 (σ² biased, as PyTorch normalises); input (N, C, ...) and its BatchStats
    (2, C), output x's shape.

    Args:
        attrs: BatchNorm2d's (num_features, eps).
    Parameters: BatchNorm2d's (weight, bias, running_mean, running_var; the running statistics unused here).
    """
    arity = (2, 2)

    @classmethod
    def example(cls):
        return cls(**BatchNorm2d(3).attrs), [(None, 3, 4, 5), (2, 3)]

    def __init__(self, **attrs):
        super().__init__(**attrs)

    @classmethod
    def infer(cls, attrs, inputs):
        x, stats = inputs
        result = BatchNorm2d.infer(attrs, [x])
        _check_stats(stats, x)
        return result


class BatchStats(Layer):
    """The batch statistics of a BatchNorm2d in training mode (training graphs only): input (N, C, ...), output
    (2, C): the mean and the unbiased variance (Σ(x − μ)²/(n − 1), n = N·H·W; the biased one when n = 1) over
    every axis but 1, what PyTorch's running statistics are updated with (the normalisation rescales it to the
    biased one). No arguments."""
    prefix = "bn_stats"
    training_only = True

    def __init__(self):
        super().__init__()

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        if x.rank < 2:
            raise ShapeError(f"expects an input (N, C, ...), got {x.describe()}")
        return TensorType((2, x.shape[1]))


class BatchNorm2dGrad(_BatchNormTraining):
    """∂L/∂x or ∂L/∂weight of a BatchNorm2d (training graphs only), from its input x and ∂L/∂y: output of x's
    shape (wrt "x") or (num_features,) (wrt "weight"). In training, a third input is the BatchStats (2, C), and
    ∂x reads ∂weight and ∂bias (C,) too: inputs (x, dy[, stats[, dweight, dbias]]).

    Args:
        attrs: BatchNorm2d's (num_features, eps), plus ``training`` (batch statistics, else the running ones)
            and ``wrt`` ("x" or "weight").
    Parameters: BatchNorm2d's.
    """
    arity = (2, 5)

    @classmethod
    def example(cls):
        return cls(**BatchNorm2d(3).attrs, training=False, wrt="x"), [(None, 3, 4, 5), (None, 3, 4, 5)]

    def __init__(self, **attrs):
        super().__init__(**attrs)

    @classmethod
    def infer(cls, attrs, inputs):
        x, dy = inputs[:2]
        BatchNorm2d.infer(attrs, [x])
        if x.shape != dy.shape:
            raise ShapeError(f"x {x.describe()} and dy {dy.describe()} must have the same shape")
        if attrs["wrt"] not in ("x", "weight"):
            raise ShapeError(f"wrt must be 'x' or 'weight', got {attrs['wrt']!r}")
        expected = (2 if not attrs["training"] else 3 if attrs["wrt"] == "weight" else 5)
        if len(inputs) != expected:
            raise ShapeError(f"{'training' if attrs['training'] else 'eval'} mode wrt {attrs['wrt']!r} reads "
                             f"{expected} inputs, got {len(inputs)}")
        if attrs["training"]:
            _check_stats(inputs[2], x)
            for vector in inputs[3:]:
                if vector.shape != (x.shape[1],):
                    raise ShapeError(f"dweight and dbias must be ({x.shape[1]},), got {vector.describe()}")
        return x.type if attrs["wrt"] == "x" else TensorType((attrs["num_features"],))


@gradient("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "BatchNorm2dTrain")
def _batchnorm_gradient(b, node, dy):
    x, training = node.inputs[0], node.op == "BatchNorm2dTrain"
    attrs = dict(num_features=node.attrs["num_features"], eps=node.attrs["eps"], training=training)
    stats = list(node.inputs[1:2])
    dweight = b.add(node, "weight", "BatchNorm2dGrad", [x, dy, *stats], node.params, **attrs, wrt="weight")
    dbias = b.add(node, "bias", "SumExcept", [dy], axis=1)
    reads = [x, dy, *stats, dweight, dbias] if training else [x, dy]
    return {0: b.add(node, "x", "BatchNorm2dGrad", reads, node.params, **attrs, wrt="x"),
            "weight": dweight, "bias": dbias}


# --- LocalResponseNorm (AlexNet, GoogLeNet): inference only -----------------------------------------------------
class LocalResponseNorm(Layer):
    """PyTorch's LocalResponseNorm: x / (k + alpha/size · Σ x² over ``size`` neighbouring channels)^beta, on
    an input (N, C, ...). The window of channel c is [c − size//2, c + (size−1)//2]; ONNX's LRN agrees for odd
    sizes only.

    Args:
        size: channels in the window.
        alpha: the multiplicative factor (default 1e-4).
        beta: the exponent (default 0.75).
        k: the additive term (default 1).
    """
    batch_independent = True
    prefix = "lrn"

    @classmethod
    def example(cls):
        return cls(3), [(None, 3, 4, 5)]

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        if int(size) < 1:
            raise ValueError(f"LocalResponseNorm: size must be >= 1, got {size}")
        super().__init__(size=int(size), alpha=float(alpha), beta=float(beta), k=float(k))

    @classmethod
    def infer(cls, attrs, inputs):
        x, = inputs
        if x.rank < 3:
            raise ShapeError(f"expects an input (N, C, ...) of rank >= 3, got {x.describe()}")
        return x.type


@exports("LocalResponseNorm")
def _lrn_to_onnx(e, n):
    a = n.attrs
    if a["size"] % 2 == 0:
        raise ExportError(f"{n.label()}: ONNX's LRN centres an even window ({a['size']}) one channel off "
                          f"PyTorch's; only odd sizes export")
    e.emit(n, "LRN", n.inputs, size=a["size"], alpha=a["alpha"], beta=a["beta"], bias=a["k"])


@imports("LRN")
def _lrn(imp, node):
    a = imp.attrs(node)
    size = int(a["size"])
    if size % 2 == 0:
        raise Unsupported(f"even size {size}: ONNX centres the window one channel off PyTorch's LocalResponseNorm")
    attrs = dict(size=size, alpha=nice_float(a.get("alpha", 1e-4)), beta=nice_float(a.get("beta", 0.75)),
                 k=nice_float(a.get("bias", 1.0)))
    imp.add(node, "LocalResponseNorm", [imp.value(node.input[0])], attrs)
