"""Make <model>_grads.npz: PyTorch's own loss and gradients for the models of make_models.py, the reference
tests/autodiff/test_pytorch_gradients.py checks cg.gradients against (the test needs no torch).

Run with a torch virtualenv (torch and numpy; make_models.py's onnx and onnxruntime imports are not needed):

    python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy
    /tmp/torchenv/bin/python tests/data/pytorch/make_gradients.py

Each model is rebuilt exactly as make_models.py builds it (same seeds, randomized BatchNorm), so its weights are
those of the .onnx files. For a seeded batch of 4 and integer targets it stores the mean cross-entropy and the
gradients of every parameter and of the input, with the model in eval mode (BatchNorm on its running
statistics) and, for models with BatchNorm, in train mode (batch statistics): x, target, loss_<mode>,
dx_<mode>, and per parameter i (PyTorch's named_parameters order) name_i, head_i (its first 16 values) and
grad_<mode>_i. The test finds each parameter in the imported graph by its shape and first values.
"""
from __future__ import annotations

import os
import sys
import types

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.modules.setdefault("onnx", types.ModuleType("onnx"))              # make_models imports them at the top;
sys.modules.setdefault("onnxruntime", types.ModuleType("onnxruntime"))  # only its exports use them
sys.path.insert(0, HERE)
from make_models import MODELS, SEED, randomize_batchnorm  # noqa: E402

GRADIENT_MODELS = ("resnet", "lenet")


def build(name: str) -> nn.Module:
    index = list(MODELS).index(name)
    torch.manual_seed(SEED + index)
    model = MODELS[name][0]()
    randomize_batchnorm(model, torch.Generator().manual_seed(1000 + index))
    return model


def main() -> None:
    for name in GRADIENT_MODELS:
        model = build(name)
        shape = MODELS[name][1]
        rng = np.random.default_rng(100)
        x = rng.standard_normal((4, *shape[1:])).astype(np.float32)
        target = rng.integers(0, 10, 4)
        record = {"x": x, "target": target}
        names = [n for n, _ in model.named_parameters()]
        for i, (n, p) in enumerate(model.named_parameters()):
            record[f"name_{i}"] = np.array(n)
            record[f"head_{i}"] = p.detach().numpy().ravel()[:16].copy()
        has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        for mode in ("eval", "train") if has_bn else ("eval",):
            model.train(mode == "train")
            model.zero_grad()
            inputs = torch.from_numpy(x).requires_grad_(True)
            loss = nn.functional.cross_entropy(model(inputs), torch.from_numpy(target))
            loss.backward()
            record[f"loss_{mode}"] = np.array(loss.item())
            record[f"dx_{mode}"] = inputs.grad.numpy()
            for i, (_, p) in enumerate(model.named_parameters()):
                record[f"grad_{mode}_{i}"] = p.grad.numpy().copy()
        np.savez_compressed(os.path.join(HERE, f"{name}_grads.npz"), **record)
        print(f"{name}: {len(names)} parameters, losses", {k: float(v) for k, v in record.items() if k[:4] == "loss"})


if __name__ == "__main__":
    main()
