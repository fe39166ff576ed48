"""What a NumPy kernel is, and the registry the plan looks kernels up in.

A kernel is built once per concrete input shape (``make(ctx)``) and returns a step function
``step(inputs, out) -> array`` that writes into ``out`` (a buffer the plan owns) and returns it, or, for
view kernels, returns a view of its input. 4-D values may live in the "cnhw" layout (channels first, then
batch): convolutions then become one GEMM over the whole batch without transposes, and 1×1 convolutions a
plain matrix product on the stored data. Layout-agnostic kernels declare both layouts.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

NCHW, CNHW = "nchw", "cnhw"


def physical_shape(shape: tuple, layout: str) -> tuple:
    if layout == CNHW and len(shape) == 4:
        return (shape[1], shape[0], shape[2], shape[3])
    return tuple(shape)


def physical_axis(axis: int, rank: int, layout: str) -> int:
    axis %= rank
    if layout == CNHW and rank == 4 and axis < 2:
        return 1 - axis
    return axis


@dataclass
class Context:
    """What a kernel factory sees: the node, concrete logical shapes, the chosen layout, and scratch space."""
    attrs: dict
    params: dict
    in_shapes: list
    out_shape: tuple
    layout: str
    scratch: Scratch
    epilogue: list = field(default_factory=list)    # apply(region, channels) of absorbed element-wise layers
    pool: object = None                             # a fused_pool.PoolSpec: the max pool to run inside the step

    def physical(self, shape) -> tuple:
        return physical_shape(shape, self.layout)

    def axis(self, axis: int, rank: int) -> int:
        return physical_axis(axis, rank, self.layout)

    def broadcaster(self) -> Callable[[list], list]:
        """Views of the inputs that broadcast in this layout as they do in the logical one: an input of lower
        rank gets its leading 1s made explicit, then the layout's axis order (the plan already converted
        inputs of full rank)."""
        rank = len(self.out_shape)
        shapes = [None if len(shape) == rank else self.physical((1,) * (rank - len(shape)) + tuple(shape))
                  for shape in self.in_shapes]
        if not any(shapes):
            return lambda inputs: inputs
        return lambda inputs: [x if shape is None else x.reshape(shape) for x, shape in zip(inputs, shapes)]


@dataclass
class Kernel:
    make: Callable[[Context], Callable]
    layouts: tuple = (NCHW,)        # layouts it can work in, preferred first
    inplace: bool = False           # may write its output into input 0's buffer
    view: bool = False              # returns a view of input 0 instead of writing a buffer
    epilogue: Callable | None = None  # make(ctx) -> apply(region, channels): run in place on a block of a
                                      # convolution's output (cnhw, channels first), fused into it by the plan
    hosts_epilogue: bool = False    # applies ctx.epilogue to its output blocks
    constant: bool = False          # make(ctx) returns the value itself: bound to a slot nothing writes
    hosts_pool: Callable | None = None  # hosts_pool(ctx): make(ctx) can run the MaxPool2d behind it (ctx.pool)


KERNELS: dict[str, Kernel] = {}


def kernel(op: str, layouts=(NCHW,), inplace=False, view=False, epilogue=None, hosts_epilogue=False,
           constant=False, hosts_pool=None):
    """Decorator registering ``make`` as the kernel factory of ``op``."""
    def register(make):
        KERNELS[op] = Kernel(make, tuple(layouts), inplace, view, epilogue, hosts_epilogue, constant, hosts_pool)
        return make
    return register


@dataclass
class Scratch:
    """Room for the steps' temporaries (im2col columns, padded copies), requested when a kernel is built.

    Each step lays its requests out from offset 0 of a region of its own; contents do not survive from one step
    to the next. A plan places every step's region in its arena like a value alive during that step only
    (storage.py, ``bind``): steps that never run at the same time share the memory, and values that are not
    live at a step can lend it theirs. ``allocate`` instead gives all steps one separate arena as large as the
    largest step needs (steps run one after the other).
    """
    size: int = 0                                   # elements the largest step needs
    sizes: dict = field(default_factory=dict)       # step id -> elements its requests need
    _arena: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    _base: dict = field(default_factory=dict)       # step id -> where its region starts in the arena
    _generation: int = 0                            # bumped by every bind: getters drop their cached views
    _step: int = -1
    _offset: int = 0

    def begin_step(self, step: int | None = None) -> int:
        """Start laying out the requests of a new step (or again those of ``step``); returns the step's id."""
        self._step = len(self.sizes) if step is None else step
        self._offset = 0
        self.sizes.setdefault(self._step, 0)
        return self._step

    def request(self, shape) -> Callable[[], np.ndarray]:
        """Reserve room for an array; the returned getter gives the view once the arena exists."""
        count = int(np.prod(shape))
        start, step = self._offset, self._step
        self._offset += (count + 15) // 16 * 16          # 64-byte alignment between requests
        self.sizes[step] = max(self.sizes.get(step, 0), self._offset)
        self.size = max(self.size, self._offset)
        cache = [-1, None]

        def get() -> np.ndarray:
            if cache[0] != self._generation:
                base = self._base.get(step, 0)
                cache[:] = [self._generation, self._arena[base + start:base + start + count].reshape(shape)]
            return cache[1]
        return get

    def bind(self, arena: np.ndarray, bases: dict) -> None:
        """Take the steps' regions from ``arena`` at ``bases`` (step id -> offset)."""
        self._arena, self._base = arena, dict(bases)
        self._generation += 1

    def allocate(self) -> None:
        """One arena of its own, every step's region at its start."""
        self.bind(np.empty(self.size, np.float32), {})

    @property
    def step_size(self) -> int:
        """Elements the current step has requested so far."""
        return self._offset
