"""Running a batch as pieces, one per core.

BLAS runs the matrix products on every core, but NumPy runs each copy, ufunc and pooling pass on one thread:
on 2 cores that single-threaded work was about a third of resnet18's time, and splitting it inside each
kernel lost more to BLAS's idle threads spinning than it gained. When every sample of a graph is computed
on its own (``Layer.per_sample``), the batch is instead cut into one piece per core; each piece runs a plan
of its own in its own thread, with BLAS single-threaded (NumPy releases the GIL inside BLAS, copies and
ufuncs), and the outputs are joined. Everything then runs in parallel, with no locking. A run that cannot be
cut (batch 1) instead lets its big kernels cut their own work, one hand-off per kernel (inference_threads,
kernel_parts; an earlier try with about seven hand-offs of ~90 µs per Winograd convolution lost); a training
graph spreads its steps over the cores (plan.py, schedule.py).
"""
from __future__ import annotations

import math
import os
import re
import threading
from contextlib import contextmanager
from functools import partial

from cnngraph.layer import lookup

from . import handoff

WORKERS = max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8))
# Training graphs: split the big gradient kernels over the cores (see split). Off: on the shared 2-core machine
# it gained nothing on resnet18's 32×32 batch-32 step when idle (−7 ms of 180 in the weight gradients, lost
# elsewhere) and cost 5–10% under load; the gradient checks run with it on so that it stays correct.
KERNEL_SPLIT = False
MIN_PIECE_MACS = 20_000_000   # ~0.1 ms of products: smaller pieces gain less than the hand-off costs
_blas = None
_kernel_split = threading.local()   # .on: training_threads() is active in this thread


def batch_symbol(graph) -> str | None:
    """The symbolic batch dimension along which the graph's samples never meet, or None.

    Every input has it as its leading dimension; every value computed from an input has it there too, and
    nowhere else, and comes from an op that is per-sample with these attributes; operands computed from
    constants alone broadcast along it (lower rank, or a leading 1)."""
    shapes = [graph.type_of(name).shape for name in graph.inputs]
    leading = {shape[0] if shape else None for shape in shapes}
    symbol = leading.pop() if len(leading) == 1 else None
    if not isinstance(symbol, str) or not symbol.isidentifier():
        return None

    def carries_batch_only_in_front(shape):
        return bool(shape) and shape[0] == symbol and not any(
            isinstance(d, str) and symbol in re.split(r"[*+]", d) for d in shape[1:])

    if not all(carries_batch_only_in_front(shape) for shape in shapes):
        return None
    batched = set(graph.inputs)
    for node in graph.layers():
        if not any(name in batched for name in node.inputs):
            continue                                    # computed from constants: the same in every piece
        first_rank = len(graph.type_of(node.inputs[0]).shape)
        if (first_rank == 0 or not carries_batch_only_in_front(node.type.shape)
                or not lookup(node.op).per_sample(node.attrs, first_rank)):
            return None
        for name in node.inputs:
            shape = graph.type_of(name).shape
            if name in batched and not carries_batch_only_in_front(shape):
                return None
            if name not in batched and len(shape) == len(node.type.shape) and shape[0] != 1:
                return None
        batched.add(node.name)
    return symbol if all(name in batched for name in graph.outputs) else None


def cuts(batch: int, macs_per_sample: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of the batch, one per core, each with enough work; one range when not worth it."""
    parts = max(1, min(WORKERS, batch, batch * macs_per_sample // MIN_PIECE_MACS))
    bounds = [batch * i // parts for i in range(parts + 1)]
    return list(zip(bounds, bounds[1:]))


def in_parallel(tasks) -> list:
    """Results of the callables, run concurrently on the standing workers (handoff.py; the first in the calling
    thread); re-raises a failure. When the workers are busy (another thread's run, or a task that itself
    splits), the cores are already taken: the tasks run one after the other in the calling thread."""
    team = handoff.team(WORKERS - 1).claim(len(tasks) - 1) if WORKERS > 1 and len(tasks) > 1 else None
    if team is not None:
        return team.run(tasks)
    return [task() for task in tasks]


@contextmanager
def single_threaded_blas():
    """BLAS on one thread per caller for the duration; the previous thread counts come back afterwards."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController
        _blas = ThreadpoolController()
    with _blas.limit(limits=1, user_api="blas"):
        yield


# --- splitting one kernel's work (training graphs) ---------------------------------------------------------
@contextmanager
def training_threads():
    """For a training graph, which cannot be cut into batch pieces (its weight gradients sum over the batch):
    BLAS on one thread, and (with KERNEL_SPLIT) the big gradient kernels split their own work over the cores. BLAS's
    threads made resnet18's 32×32 batch-32 step 3–5× slower on the shared 2-core machine (they spin between
    products while NumPy copies on one core); splitting the kernels' work ourselves keeps both cores busy on
    the copies too."""
    with single_threaded_blas():
        _kernel_split.on = True
        try:
            yield
        finally:
            _kernel_split.on = False


def split(count: int, task, minimum: int = 1) -> None:
    """Run ``task(start, stop)`` over [0, count) cut into one range per core when training_threads() is on in
    this thread (and the range holds ``minimum`` each), otherwise at once; the ranges must touch disjoint
    memory."""
    parts = min(WORKERS, count // max(1, minimum)) if KERNEL_SPLIT and getattr(_kernel_split, "on", False) else 1
    if parts <= 1:
        task(0, count)
        return
    bounds = [count * i // parts for i in range(parts + 1)]
    in_parallel([partial(task, start, stop) for start, stop in zip(bounds, bounds[1:])])


# --- splitting one kernel's work at inference (a batch that is not cut into pieces) -----------------------------
_inference = threading.local()     # .on: inference_threads() is active in this thread
INFERENCE_SPLIT = True             # False: BLAS's own threads instead, as before (to compare)


@contextmanager
def inference_threads(macs: int):
    """For a run whose batch is not cut (batch 1, or samples that meet): BLAS on one thread, and the big
    convolutions cut their own work into one part per core (kernel_parts), each part gathering, multiplying and
    finishing its block. With BLAS's threads instead, only the products ran on both cores and every copy,
    transform and epilogue on one: resnet18 at batch 1 ran 1.3× faster on 2 cores than on 1, onnxruntime 2×.
    A graph of fewer than 2·MIN_PIECE_MACS (``macs``, see splitting_macs) runs as it is."""
    if not INFERENCE_SPLIT or WORKERS < 2 or macs < 2 * MIN_PIECE_MACS:
        yield
        return
    with single_threaded_blas():
        _inference.on = True
        try:
            yield
        finally:
            _inference.on = False


SPLITTING_OPS = ("Conv2d", "Linear", "MaxPool2d", "AvgPool2d")    # kernels that call kernel_parts


def splitting_macs(graph) -> int:
    """The graph's work per sample, in multiply-adds, when nearly all of it (90%) is in kernels that split their
    own work, else 0: inference_threads then leaves BLAS's threads to the others (1-D/3-D convolutions, MatMul).
    The element-wise kernels that split (ELEMENT_SPLITTING_OPS) count ELEMENT_MACS an output element."""
    total = covered = 0
    for n in graph.layers():
        if _splits_elements(n):
            work = ELEMENT_MACS * _elements_per_sample(n.type.shape)
        else:
            work = n.layer.macs(n.attrs, graph.operands(n), n.type)
        total += work
        covered += work if n.op in SPLITTING_OPS or _splits_elements(n) else 0
    return total if covered >= 0.9 * total else 0


def kernel_parts(count: int, macs: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of ``count`` units of a kernel's work (``macs`` multiply-adds in all): one per core
    inside inference_threads() when each part has MIN_PIECE_MACS, else the one range [0, count)."""
    parts = max(1, min(WORKERS, count, macs // MIN_PIECE_MACS)) if getattr(_inference, "on", False) else 1
    bounds = [count * i // parts for i in range(parts + 1)]
    return list(zip(bounds, bounds[1:]))


def even_band(rows: int, band: int, images: int) -> int:
    """A band height of at most ``band`` rows cutting ``rows`` into bands whose count over ``images`` images is a
    multiple of WORKERS where it can be, so that every core gets as many blocks of a kernel's work."""
    bands = -(-rows // band)
    while images * bands % WORKERS and bands < rows:
        bands += 1
    return -(-rows // bands)


def training_active() -> bool:
    """Whether training_threads() is on in this thread (BLAS on one thread: a plan may spread its steps over
    the cores, plan.Executor and schedule.py)."""
    return getattr(_kernel_split, "on", False)


@contextmanager
def kernels_unsplit():
    """No kernel splits its work in this thread for the duration: the cores already run a lane each."""
    previous = getattr(_kernel_split, "on", False)
    _kernel_split.on = False
    try:
        yield
    finally:
        _kernel_split.on = previous


# --- splitting element-wise work at inference (element-wise kernels, norms, Upsample) ---------------------------
# Kernels that call element_parts (elementwise.unary with split: see split_elementwise for why only these).
ELEMENT_SPLITTING_OPS = frozenset({"Mish", "Softplus", "GELU"})
ELEMENT_MACS = 1000             # an element of such a kernel (5–9 ns) takes as long as ~1000 multiply-adds in a GEMM
MIN_PART_ELEMENTS = 1 << 17     # parts of 128k elements gained 0.6–0.8× on 2 cores, of 32k–64k lost up to 1.4×


def _splits_elements(node) -> bool:
    return node.op in ELEMENT_SPLITTING_OPS and (node.op != "GELU" or node.attrs.get("approximate") == "tanh")


def _elements_per_sample(shape) -> int:
    dims = shape[1:]
    return int(math.prod(dims)) if all(isinstance(d, int) for d in dims) else 0


def element_parts(count: int, elements: int, align: int = 1) -> list[tuple[int, int]]:
    """[start, stop) ranges of ``count`` units (``elements`` in all), one per core inside inference_threads()
    when each part has MIN_PART_ELEMENTS, else [0, count). Inner bounds are multiples of ``align`` (a kernel's
    block), so that each part runs exactly the calls the whole range would: the results are bit for bit the
    same."""
    parts = 1
    if getattr(_inference, "on", False):
        parts = max(1, min(WORKERS, elements // MIN_PART_ELEMENTS, -(-count // align)))
    blocks = -(-count // align)
    bounds = [min(count, blocks * i // parts * align) for i in range(parts)] + [count]
    return list(zip(bounds, bounds[1:]))
