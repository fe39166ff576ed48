"""What the ONNX import handlers share, free of the onnx package so that the family modules
(cnngraph/layers/*.py) can declare their handlers without ``import cnngraph`` importing onnx."""
from __future__ import annotations

import numpy as np


class Unsupported(Exception):
    """A node the importer cannot map; the message says why."""


def nice_float(value) -> float:
    """The shortest decimal that a float32 attribute came from (1e-5 rather than 9.99999974e-06)."""
    return float(str(np.float32(value)))


def _same_pads(size, kernel, stride, dilation, mode: str) -> tuple[int, int]:
    """auto_pad SAME_*: out = ceil(in/stride), total = max(0, (out−1)·s + (k−1)·d + 1 − in); UPPER puts the
    extra cell at the end, LOWER at the beginning."""
    if not isinstance(size, int):
        raise Unsupported("auto_pad SAME needs a static spatial size")
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - size)
    small, large = total // 2, total - total // 2
    return (small, large) if mode == "SAME_UPPER" else (large, small)


def spatial(imp, node, x, kernel, strides, dilations, a) -> tuple[int, int, int, int]:
    mode = a.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode == "NOTSET":
        pads = tuple(int(p) for p in a.get("pads", (0, 0, 0, 0)))
        if len(pads) != 4:
            raise Unsupported(f"pads {list(pads)} is not 2-D")
        return pads
    if mode == "VALID":
        return (0, 0, 0, 0)
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise Unsupported(f"auto_pad {mode!r}")
    size = imp.shape(x)[2:]
    (top, bottom), (left, right) = (_same_pads(size[i], kernel[i], strides[i], dilations[i], mode) for i in range(2))
    return (top, left, bottom, right)


def pair_attr(values, default, what):
    values = tuple(int(v) for v in values) if values is not None else default
    if len(values) != 2:
        raise Unsupported(f"{what} {list(values)} is not 2-D")
    return values


def binary(op: str):
    def handler(imp, node):
        imp.add(node, op, [imp.operand(node.input[0]), imp.operand(node.input[1])])
    return handler


def simple(op: str, **attr_map):
    def handler(imp, node):
        a = imp.attrs(node)
        attrs = {ours: nice_float(a.get(theirs, default)) for ours, (theirs, default) in attr_map.items()}
        imp.add(node, op, [imp.value(node.input[0])], attrs)
    return handler

