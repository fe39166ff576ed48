"""Merge a constant spatial Pad into the MaxPool2d/AvgPool2d that reads it (level 1: the importer maps ONNX's
Pad and pools one to one; the exporter writes PyTorch's ceil_mode pools that ONNX cannot say directly as a
Pad before a pool, and this rule gives them back).

Pool(Pad(x, p), q) has windows starting at i·s − p_begin − q_begin of x, over x extended by the fill; a pool of
x with pads p + q has the same windows when it gives the same number of outputs. So the merge is exact when
  - max: the fill is −inf (max pooling's own padding never wins a max) and the output sizes agree;
  - average: the fill is 0 and every window's divisor is the same: the merged pool counts the pre-padding
    (count_include_pad=1), so a pool that pads itself without counting it (count_include_pad=0, q ≠ 0) has no
    merged form (onnx/optimizer PR #108, onnxruntime PR #23190). Divisors are compared with the one definition
    the backend uses (cnngraph.shapes.average_pool_divisor).
The exporter's MaxPool2d(ceil_mode) is Pad(−inf, the last window's overhang at the end) + a floor MaxPool;
when the merged pads end in exactly that overhang, the ceil_mode pool with the original pads is written.
"""
from __future__ import annotations

import numpy as np

from cnngraph.shapes import average_pool_divisor, overhang, pool_output_size

from .rules import rule, rule_pass


def spatial_pads(pad) -> tuple[int, int, int, int] | str:
    """(top, left, bottom, right) of a constant Pad of a 4-D value that pads only H and W, or why not."""
    pads = pad.attrs["pads"]
    if pad.attrs["mode"] != "constant":
        return f"mode {pad.attrs['mode']!r} is not a constant fill"
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)):
        return f"pads {list(pads)} pad more than the two spatial axes"
    if min(pads) < 0:
        return f"pads {list(pads)} crop"
    return pads[2], pads[3], pads[6], pads[7]


def _sizes(size, attrs, pads, ceil):
    return [pool_output_size(size[i], attrs["kernel_size"][i], attrs["stride"][i], pads[i], pads[2 + i],
                             attrs["dilation"][i], ceil) for i in range(2)]


def _divisors(size, out, attrs, pads, include):
    return [average_pool_divisor(size[i], out[i], attrs["kernel_size"][i], attrs["stride"][i], pads[i], pads[2 + i],
                                 include, attrs["dilation"][i]) for i in range(2)]


def recover_ceil(size, attrs, merged, pre, out):
    """The exporter's Pad(−inf, end overhang) + floor MaxPool: the original ceil_mode pads, if they fit."""
    if pre[0] or pre[1]:
        return None
    pads = (merged[0], merged[1], merged[2] - pre[2], merged[3] - pre[3])
    got = _sizes(size, attrs, pads, True)
    beyond = [overhang(size[i], got[i], attrs["kernel_size"][i], attrs["stride"][i], pads[i], pads[2 + i],
                       attrs["dilation"][i]) for i in range(2)]
    return pads if got == out and beyond == [pre[2], pre[3]] else None


@rule(anchor=lambda node: node.op in ("MaxPool2d", "AvgPool2d"))
def pad_into_pool(m):
    """Pool(Pad(x, p, fill), q) -> Pool(x, p + q) when exact (−inf fill for max; 0 for average, divisors kept)"""
    pool, pad = m.node, m.input()
    if pad.op != "Pad":
        return None
    pre = spatial_pads(pad)
    if isinstance(pre, str):
        return m.refuse(pre, pad, pool)
    maximum, fill, attrs = pool.op == "MaxPool2d", pad.attrs["value"], pool.attrs
    if fill != (-np.inf if maximum else 0.0):
        return m.refuse(f"the fill {fill} is not {'-inf' if maximum else '0'}", pad, pool)
    if why := m.read_elsewhere(pad.name):
        return m.refuse(why, pad, pool)
    x = pad.inputs[0]
    size, out = m.graph.type_of(x).shape[2:], list(pool.type.shape[2:])
    merged = tuple(p + q for p, q in zip(pre, attrs["pads"]))
    ceil = attrs["ceil_mode"]
    if _sizes(size, attrs, merged, ceil) != out:
        return m.refuse(f"pads {merged} give other output sizes than {out}", pad, pool)
    new = dict(attrs, pads=merged)
    if maximum:
        recovered = None if ceil else recover_ceil(size, attrs, merged, pre, out)
        if recovered is not None:
            new.update(pads=recovered, ceil_mode=True)
    else:
        padded = [size[i] + pre[i] + pre[2 + i] for i in range(2)]
        before = _divisors(padded, out, attrs, attrs["pads"], attrs["count_include_pad"])
        after = _divisors(size, out, attrs, merged, True)
        if not all(np.array_equal(a, b) for a, b in zip(before, after)):
            return m.refuse("the merged pool would divide some windows by another count (the pool pads "
                            "itself without counting it: count_include_pad=0)", pad, pool)
        new["count_include_pad"] = True
    m.graph.replace(pool.name, pool.op, [x], new)
    m.graph.erase(pad.name)
    return m.rewrote([pad, pool], [pool.name])


PASS = rule_pass("canon_pool_pad", 1, [pad_into_pool], "a constant Pad merged into the pool that reads it")
