"""ONNX attributes of N-D sliding windows (Conv, ConvTranspose): one integer per spatial axis, and the pads
(the begins, then the ends) an explicit ``pads`` or ``auto_pad`` gives."""
from __future__ import annotations

from .handler_tools import Unsupported, _same_pads


def ints_attr(values, dims: int, what: str, default: int = 1) -> tuple[int, ...]:
    """An ints attribute with one value per spatial axis (``default`` on every axis when absent)."""
    values = tuple(int(v) for v in values) if values is not None else (default,) * dims
    if len(values) != dims:
        raise Unsupported(f"{what} {list(values)} does not have one value per spatial axis ({dims})")
    return values


def auto_pad_mode(a) -> str:
    mode = a.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise Unsupported(f"auto_pad {mode!r}")
    return mode


def explicit_pads(a, dims: int) -> tuple[int, ...]:
    pads = tuple(int(p) for p in a.get("pads", (0,) * (2 * dims)))
    if len(pads) != 2 * dims:
        raise Unsupported(f"pads {list(pads)} does not have two values per spatial axis ({dims})")
    if min(pads, default=0) < 0:
        raise Unsupported(f"negative pads {list(pads)}")
    return pads


def window_pads(imp, x, kernel, strides, dilations, a) -> tuple[int, ...]:
    """The begins then the ends of a convolution's zero padding, from ``pads`` or ``auto_pad``: SAME_* gives
    out = ceil(in/stride), the odd cell at the end (UPPER) or the beginning (LOWER)."""
    dims = len(kernel)
    mode = auto_pad_mode(a)
    if mode == "NOTSET":
        return explicit_pads(a, dims)
    if mode == "VALID":
        return (0,) * (2 * dims)
    size = imp.shape(x)[2:]
    pairs = [_same_pads(size[i], kernel[i], strides[i], dilations[i], mode) for i in range(dims)]
    return tuple(p[0] for p in pairs) + tuple(p[1] for p in pairs)
