"""Tensor types with symbolic dimensions, and the output-size arithmetic convolution and pooling share.

A dimension is an ``int`` or a ``str`` naming a symbolic size (``"N"`` for the batch). Keeping the
batch symbolic is what lets one graph run, and export, for any batch size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Dim = int | str
Shape = tuple  # tuple[Dim, ...]

BATCH = "N"


def normalize_shape(shape, *, what: str = "shape") -> Shape:
    """Turn a user shape into a tuple of dims: ``None`` becomes ``"N"`` in the first axis, ``"d{i}"`` elsewhere."""
    if isinstance(shape, (int, str)) or shape is None:
        raise TypeError(f"{what} must be a sequence of dimensions, got {shape!r}")
    dims = []
    for axis, dim in enumerate(shape):
        if dim is None:
            dims.append(BATCH if axis == 0 else f"d{axis}")
        elif isinstance(dim, str) and dim:
            dims.append(dim)
        elif isinstance(dim, (int,)) and not isinstance(dim, bool) and dim >= 0:
            dims.append(int(dim))
        elif hasattr(dim, "__index__") and not isinstance(dim, bool) and int(dim) >= 0:
            dims.append(int(dim))
        else:
            raise TypeError(f"{what}: dimension {axis} must be a non-negative int, None or a name, got {dim!r}")
    return tuple(dims)


def format_shape(shape: Shape) -> str:
    inner = ", ".join(str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def product(dims) -> Dim:
    """Product of dims; symbolic factors stay as a ``*``-joined name (``"N*3"``)."""
    number = 1
    names = []
    for d in dims:
        if isinstance(d, int):
            number *= d
        else:
            names.append(d)
    if not names:
        return number
    if number == 0:
        return 0
    return "*".join(([str(number)] if number != 1 else []) + names)


def total(dims) -> Dim:
    """Sum of dims; symbolic terms stay as a ``+``-joined name."""
    number = sum(d for d in dims if isinstance(d, int))
    names = [str(d) for d in dims if not isinstance(d, int)]
    if not names:
        return number
    return "+".join(names + ([str(number)] if number else []))


def ntuple(value, n: int, what: str) -> tuple[int, ...]:
    """PyTorch's int-or-tuple arguments, for n spatial axes."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value),) * n
    if isinstance(value, (tuple, list)) and len(value) == n and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        return tuple(int(v) for v in value)
    raise ValueError(f"{what} must be an int or a tuple of {n} ints, got {value!r}")

@dataclass(frozen=True)
class TensorType:
    shape: Shape
    dtype: str = "float32"

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        return format_shape(self.shape)


def conv_output_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int) -> int:
    """PyTorch/ONNX convolution output length along one axis (may be <= 0 when the input is too small)."""
    return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1


def pool_output_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int,
                     ceil_mode: bool) -> int:
    """PyTorch pooling output length (aten's pooling_output_shape_pad_lr): with ceil_mode, a last window that
    would start in the right padding (or past it) is dropped (pytorch #71549). ceil_mode rounds up even when
    the window is wider than the padded input: 2 cells, kernel 3, stride 2 give one window, as in ONNX.
    A result <= 0 means the input is too small (the caller reports it)."""
    span = size + pad_begin + pad_end - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


def average_pool_divisor(size: int, out: int, kernel: int, stride: int, pad_begin: int, pad_end: int,
                         count_include_pad: bool, dilation: int = 1) -> np.ndarray:
    """PyTorch's divisor of each average window along one axis: the taps inside the padded input when
    count_include_pad, inside the input alone otherwise (a last ceil_mode window past the padding counts
    only what it covers). The backend, the exporter and the importer all use this one definition."""
    taps = (np.arange(out) * stride - pad_begin)[:, None] + np.arange(kernel) * dilation
    low, high = (-pad_begin, size + pad_end) if count_include_pad else (0, size)
    return ((taps >= low) & (taps < high)).sum(axis=1)


def overhang(size: int, out: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int = 1) -> int:
    """Cells the last of ``out`` windows reaches past the padded input (only a ceil_mode window can)."""
    return max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - (size + pad_begin + pad_end))
