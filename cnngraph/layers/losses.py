"""Losses and their gradients (training graphs only): what a training graph puts after the network's output.

Both are means, as PyTorch's default ``reduction="mean"``:
  cross-entropy  L = −(1/N) Σ_n log softmax(z_n)[t_n],   ∂L/∂z = (softmax(z) − onehot(t))/N
  squared error  L = (1/M) Σ (p − t)²  (M elements),     ∂L/∂p = 2(p − t)/M
The target of the cross-entropy is a float32 vector of class indices (graph inputs are float32; indices are
exact up to 2²⁴).
"""
from __future__ import annotations

from ..errors import ShapeError
from ..layer import Layer
from ..shapes import TensorType


class _Loss(Layer):
    arity = (2, 2)
    training_only = True
    prefix = "loss"

    def __init__(self):
        super().__init__()


def _check_classes(inputs):
    logits, target = inputs
    if logits.rank != 2 or target.rank != 1 or target.shape[0] != logits.shape[0]:
        raise ShapeError(f"expects logits (N, classes) and class indices (N,), got {logits.describe()} and "
                         f"{target.describe()}")


def _check_same(inputs):
    prediction, target = inputs
    if prediction.shape != target.shape:
        raise ShapeError(f"prediction {prediction.describe()} and target {target.describe()} must have one shape")


class CrossEntropyLoss(_Loss):
    """Mean cross-entropy of logits (N, classes) against class indices (N,), as ``torch.nn.CrossEntropyLoss()``;
    output a scalar (shape ()). No arguments."""

    @classmethod
    def example(cls):
        return cls(), [(None, 4), (None,)]

    @classmethod
    def infer(cls, attrs, inputs):
        _check_classes(inputs)
        return TensorType(())


class CrossEntropyLossGrad(_Loss):
    """∂(mean cross-entropy)/∂logits: (softmax(z) − onehot(t))/N, of the logits' shape. No arguments."""

    example = CrossEntropyLoss.example

    @classmethod
    def infer(cls, attrs, inputs):
        _check_classes(inputs)
        return inputs[0].type


class MSELoss(_Loss):
    """Mean squared error between a prediction and a target of the same shape, as ``torch.nn.MSELoss()``;
    output a scalar. No arguments."""

    @classmethod
    def example(cls):
        return cls(), [(None, 3), (None, 3)]

    @classmethod
    def infer(cls, attrs, inputs):
        _check_same(inputs)
        return TensorType(())


class MSELossGrad(_Loss):
    """∂(mean squared error)/∂prediction: 2(p − t)/M, of the prediction's shape. No arguments."""

    example = MSELoss.example

    @classmethod
    def infer(cls, attrs, inputs):
        _check_same(inputs)
        return inputs[0].type
