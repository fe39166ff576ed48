"""Element-wise kernels of many passes, run block by block so that their temporaries stay in cache, and
rational functions evaluated with one matrix product.

Each NumPy ufunc call is one pass over its operands. A kernel of ten passes over a 5 MB tensor streams
100 MB through memory; cut into blocks of BLOCK elements, its temporaries stay in L2 between the passes and
only the input and the output cross memory once (measured: a pass costs 0.15–0.2 ms per million float32 in
cache against 0.35–0.45 ms out of it; the calls' overhead, 1–2 µs each, is a fifth of a 32k block's time).

A polynomial costs two passes per degree with Horner's rule (multiply, add: NumPy has no fused
multiply-add). With the powers of the variable in the rows of one buffer (one pass per power), every
polynomial of the same variable is one row of a single small matrix product (BLAS, one pass over the
powers): P/Q of degree 4/4 costs 3 + 1 passes instead of 16.
"""
from __future__ import annotations

import threading

import numpy as np

BLOCK = 32768                   # elements per block: 128 KB a row; a kernel's 5–10 rows fit in L2 (2 MB)
ROW = BLOCK + 32                # workspace rows a power of two apart collide in the cache's sets: 5× slower
_local = threading.local()      # per-thread scratch: batch pieces run kernels in parallel threads
_constants: dict = {}


def blockwise(apply):
    """``apply(x, out, attrs)`` on flat blocks of at most BLOCK elements of ``x`` and ``out`` (``out`` may be
    ``x``: each block is read before it is written). A strided region (an epilogue on part of a convolution's
    output) goes through a contiguous copy."""
    def run(x, out, attrs):
        if x.flags.c_contiguous and out.flags.c_contiguous:
            flat_x, flat_out = x.reshape(-1), out.reshape(-1)
            for start in range(0, flat_x.size, BLOCK):
                apply(flat_x[start:start + BLOCK], flat_out[start:start + BLOCK], attrs)
            return out
        copy = np.array(x, dtype=out.dtype, order="C")
        run(copy, copy, attrs)
        np.copyto(out, copy)
        return out
    return run


def workspace(name: str, rows: int, n: int, dtype=np.float32) -> np.ndarray:
    """This thread's (rows, n) scratch array called ``name`` (n ≤ BLOCK): row 0 is all ones (the zeroth
    power), the other rows are the caller's to fill. Rows are ROW apart, which BLAS reads directly."""
    cache = getattr(_local, "arrays", None)
    if cache is None:
        cache = _local.arrays = {}
    key = (name, rows, np.dtype(dtype))
    array = cache.get(key)
    if array is None:
        array = cache[key] = np.empty((rows, ROW), dtype)
        array[0] = 1
    return array[:, :n]


def constant(value: float, n: int, dtype=np.float32) -> np.ndarray:
    """A read-only array of n copies of ``value``: np.minimum and np.maximum take a scalar operand through a
    strided loop about twice as slow as their contiguous one."""
    key = (value, np.dtype(dtype))
    array = _constants.get(key)
    if array is None:
        array = np.full(BLOCK, value, dtype)
        array.flags.writeable = False
        _constants[key] = array
    return array[:n]


def powers(powers_of: np.ndarray) -> np.ndarray:
    """Fill rows 2.. of a workspace whose row 1 holds the variable with its successive powers."""
    for k in range(2, powers_of.shape[0]):
        np.multiply(powers_of[k - 1], powers_of[1], out=powers_of[k])
    return powers_of
