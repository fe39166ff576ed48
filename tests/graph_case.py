"""A random graph together with the script that built it, so that a failing example prints as a reproducer.

A Case runs lines of Python against the public API (``g.input``, ``g.apply(cg.Conv2d(...), v)``, ...) and keeps
them: the script rebuilds the very same graph, weights included (layers draw their initial weights in order from
``cg.manual_seed``'s generator; BatchNorm statistics and constants come from ``rng``). Run it from tests/.
"""
from __future__ import annotations

import numpy as np

import cnngraph as cg

HEADER = "import numpy as np\nimport cnngraph as cg\nfrom graph_case import random_bn, random_constant"


def random_bn(channels: int, rng) -> cg.BatchNorm2d:
    """A BatchNorm2d with random statistics (its defaults would make it the identity)."""
    bn = cg.BatchNorm2d(channels, eps=float(rng.choice([1e-5, 1e-3])))
    bn.weight = rng.uniform(0.5, 1.5, channels) * rng.choice([-1.0, 1.0], channels)
    bn.bias = rng.normal(size=channels)
    bn.running_mean = rng.normal(size=channels)
    bn.running_var = rng.uniform(0.25, 2.0, channels)
    return bn


def random_constant(shape, rng) -> cg.Constant:
    """A constant away from 0 (a per-channel scale or shift)."""
    return cg.Constant(rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape))


class Case:
    """A graph and the script that built it: its repr, which hypothesis prints for a failing example."""

    def __init__(self, seed: int = 0):
        self.lines: list[str] = []
        self.scope = {"cg": cg, "np": np, "random_bn": random_bn, "random_constant": random_constant}
        self.produced: list[str] = []             # values made by layers: candidates for extra graph outputs
        self._count = 0
        self.run(f"cg.manual_seed({seed}); rng = np.random.default_rng({seed})")
        self.run('g = cg.Graph("random")')

    def run(self, line: str) -> None:
        exec(line, self.scope)
        self.lines.append(line)

    def name(self, prefix: str = "v") -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def input(self, shape) -> str:
        name = self.name()
        self.run(f'{name} = g.input("x", {shape!r})')
        return name

    def apply(self, layer: str, *inputs: str) -> str:
        name = self.name()
        self.run(f"{name} = g.apply({', '.join([layer, *inputs])})")
        if "cg.Constant" not in layer and "random_constant" not in layer:
            self.produced.append(name)
        return name

    def layer(self, text: str) -> str:
        """A layer object kept under a name, to be applied more than once (shared weights)."""
        name = self.name("L")
        self.run(f"{name} = {text}")
        return name

    def shape(self, value: str) -> tuple:
        return self.scope[value].shape

    @property
    def graph(self) -> cg.Graph:
        return self.scope["g"]

    def layer_count(self) -> int:
        return sum(1 for n in self.graph.layers() if n.op != "Constant")

    def script(self) -> str:
        return "\n".join([HEADER, *self.lines])

    def __repr__(self) -> str:
        return f"Case('''\n{self.script()}\n''')"
