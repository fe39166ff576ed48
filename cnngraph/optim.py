"""Optimizers and learning-rate schedules, with PyTorch's update rules and defaults (torch.optim).

An optimizer keeps its state (momentum buffers, Adam's moments) per parameter key and turns a parameter and its
gradient into the new parameter: ``new = optimizer.update(key, param, grad)``, then ``optimizer.end_step()``
once all parameters of the step are done. A schedule sets ``optimizer.lr`` once per epoch (``scheduler.step()``).
"""
from __future__ import annotations

import math

import numpy as np


class Optimizer:
    def __init__(self, lr: float, weight_decay: float = 0.0):
        if lr <= 0 or weight_decay < 0:
            raise ValueError(f"{type(self).__name__}: lr must be > 0 and weight_decay >= 0, got {lr}, {weight_decay}")
        self.lr, self.initial_lr, self.weight_decay = float(lr), float(lr), float(weight_decay)
        self.state: dict = {}
        self.steps = 0

    def update(self, key, param: np.ndarray, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def end_step(self) -> None:
        self.steps += 1

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in vars(self).items() if k not in ("state", "steps", "initial_lr"))
        return f"{type(self).__name__}({shown})"


class SGD(Optimizer):
    """Stochastic gradient descent as ``torch.optim.SGD``: g = ∇ + weight_decay·p; with momentum μ the buffer
    b = μ·b + g (b = g at the first step) and g = b, or g + μ·b with Nesterov; then p = p − lr·g."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        if momentum < 0 or (nesterov and momentum == 0):
            raise ValueError("SGD: momentum must be >= 0, and > 0 with nesterov")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def update(self, key, param, grad):
        # the momentum buffer is updated in place and the new parameter is the only new array: on resnet18's 11M
        # parameters each new array is 45 MB of fresh pages (the same float32 operations as before)
        g = grad + self.weight_decay * param if self.weight_decay else grad
        if self.momentum:
            buffer = self.state.get(key)
            if buffer is None:
                buffer = self.state[key] = np.array(g, np.float32)
            else:
                buffer *= self.momentum
                buffer += g
            g = g + self.momentum * buffer if self.nesterov else buffer
        new = np.multiply(g, -self.lr, dtype=np.result_type(param, g))
        new += param
        return new


class Adam(Optimizer):
    """Adam as ``torch.optim.Adam`` (weight decay as an L2 term added to the gradient): m = β₁m + (1 − β₁)g,
    v = β₂v + (1 − β₂)g², p = p − lr·m̂/(√v̂ + eps) with the bias corrections m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ)."""
    decoupled = False

    def __init__(self, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        self.betas, self.eps = (float(betas[0]), float(betas[1])), float(eps)

    def update(self, key, param, grad):
        beta1, beta2 = self.betas
        if self.decoupled:
            param = param * (1.0 - self.lr * self.weight_decay)
        elif self.weight_decay:
            grad = grad + self.weight_decay * param
        m, v = self.state.get(key) or (np.zeros_like(grad), np.zeros_like(grad))
        m *= beta1                                   # the moments in place: the same operations, fewer new arrays
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad
        self.state[key] = (m, v)
        t = self.steps + 1
        m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
        return param - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class AdamW(Adam):
    """AdamW as ``torch.optim.AdamW``: Adam with decoupled weight decay, p = p·(1 − lr·weight_decay) before the
    Adam step (default weight_decay 0.01)."""
    decoupled = True

    def __init__(self, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        super().__init__(lr, betas, eps, weight_decay)


class StepLR:
    """``torch.optim.lr_scheduler.StepLR``: lr = initial lr · gamma^⌊epoch / step_size⌋; call ``step()`` per epoch."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        self.optimizer, self.step_size, self.gamma, self.epoch = optimizer, int(step_size), float(gamma), 0

    def step(self) -> None:
        self.epoch += 1
        self.optimizer.lr = self.optimizer.initial_lr * self.gamma ** (self.epoch // self.step_size)


class CosineAnnealingLR:
    """``torch.optim.lr_scheduler.CosineAnnealingLR``: lr = eta_min + (initial − eta_min)·(1 + cos(π·epoch/T_max))/2."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):  # noqa: N803 (PyTorch's name)
        self.optimizer, self.T_max, self.eta_min, self.epoch = optimizer, int(T_max), float(eta_min), 0

    def step(self) -> None:
        self.epoch += 1
        span = self.optimizer.initial_lr - self.eta_min
        self.optimizer.lr = self.eta_min + span * (1 + math.cos(math.pi * self.epoch / self.T_max)) / 2


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}
