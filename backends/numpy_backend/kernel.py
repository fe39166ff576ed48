"""What a NumPy kernel is, and the registry the plan looks kernels up in.

A kernel is built once per concrete input shape (``make(ctx)``) and returns a step function
``step(inputs, out) -> array`` that writes into ``out`` (a buffer the plan owns) and returns it, or, for
view kernels, returns a view of its input. 4-D values may live in the "cnhw" layout (channels first, then
batch): convolutions then become one GEMM over the whole batch without transposes, and 1×1 convolutions a
plain matrix product on the stored data. Layout-agnostic kernels declare both layouts.
"""
from __future__ import annotations

import threading
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


KERNELS: dict[str, Kernel] = {}


def kernel(op: str, layouts=(NCHW,), inplace=False, view=False, epilogue=None, hosts_epilogue=False,
           constant=False):
    """Decorator registering ``make`` as the kernel factory of ``op``."""
    def register(make):
        KERNELS[op] = Kernel(make, tuple(layouts), inplace, view, epilogue, hosts_epilogue, constant)
        return make
    return register


@dataclass
class Scratch:
    """One arena shared by every step for temporaries (im2col columns, padded copies).

    Steps of one lane run one after the other, so their temporaries never overlap in time: each step lays its
    requests out from offset 0, and the arena is as large as the largest step needs. Contents do not
    survive from one step to the next. A plan whose steps run on several threads at once (plan.Schedule) gives
    each thread (lane) an arena of its own; a getter returns the view into the arena of the lane it is called
    from, so the same kernel works on any lane.
    """
    size: int = 0
    _arenas: list = field(default_factory=lambda: [np.empty(0, np.float32)])
    _offset: int = 0
    _lane: threading.local = field(default_factory=threading.local)

    def begin_step(self) -> None:
        self._offset = 0

    def request(self, shape) -> Callable[[], np.ndarray]:
        """Reserve room for an array; the returned getter gives the view once the arena exists."""
        count = int(np.prod(shape))
        start = self._offset
        self._offset += (count + 15) // 16 * 16          # 64-byte alignment between requests
        self.size = max(self.size, self._offset)
        cache = {}
        lane = self._lane

        def get() -> np.ndarray:
            index = getattr(lane, "index", 0)
            view = cache.get(index)
            if view is None:
                view = cache[index] = self._arenas[index][start:start + count].reshape(shape)
            return view
        return get

    def allocate(self, lanes: int = 1) -> None:
        """Arenas for ``lanes`` threads (views handed out earlier stay valid: arenas only grow)."""
        while len(self._arenas) < lanes:
            self._arenas.append(np.empty(0, np.float32))
        for index, arena in enumerate(self._arenas[:lanes]):
            if arena.size < self.size:
                self._arenas[index] = np.empty(self.size, np.float32)

    def use_lane(self, index: int) -> None:
        """Getters called from this thread from now on return views into arena ``index``."""
        self._lane.index = index

    @property
    def step_size(self) -> int:
        """Elements the current step has requested so far."""
        return self._offset

    @property
    def nbytes(self) -> int:
        return sum(arena.nbytes for arena in self._arenas)
