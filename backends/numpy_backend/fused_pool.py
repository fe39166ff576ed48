"""A max pool run inside the convolution before it (resnet's stem: 7×7/2 convolution, BatchNorm, ReLU, 3×3/2
max pool), band by band of pooled rows while the convolution's band is still in cache.

The plan fuses a MaxPool2d into a convolution whose value (after its absorbed element-wise chain) the pool
alone reads and that is not a graph output (pool_follower); the convolution's kernel decides whether it can
host it (gemm.hosts_pool: the im2col path). Each band of pooled rows [a, b) needs the convolution's rows
conv_rows(a, b) (one row more than twice the band for a 3×3/2 pool: recomputed, not carried, so that bands
stay independent and can go to different cores). The convolution's full-size output (3.2 MB for resnet18 at
batch 1) is then never written to memory, and the plan's arena loses it (resnet18: 11.4 → 8.5 MiB at batch 1).

Two ways to pool a band: stride-2 pools on big images compute the convolution in parity order
(parity_conv_pool), where every tap of the pool is a flat shifted slice; the others pool the band in its
natural order with pooling.py's separable passes (PoolBands: as fast as the two steps apart, less memory).

Max pooling commutes with any increasing function applied to every element (max f(x) = f(max x)), so an
epilogue made only of ReLU, ReLU6 and Hardtanh runs after the pool, on a quarter of the elements, as long as
no window lies entirely in the padding (its output would be the pool's fill, not f(fill)).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import batch_split
from .pooling import axis_passes, run_passes, tap_range

ENABLED = True                                           # False: the plan fuses no pool (to compare)
INCREASING = frozenset({"ReLU", "ReLU6", "Hardtanh"})   # element-wise, non-decreasing, exact in float32
FILL = np.finfo(np.float32).min                          # MaxPool2d's start value (pooling.make_maxpool)


@dataclass
class PoolSpec:
    """What a convolution kernel needs to host the max pool behind it (plan.py builds it)."""
    attrs: dict                 # the MaxPool2d's attributes
    out_hw: tuple               # its output's height and width
    increasing: tuple           # per entry of the host's ctx.epilogue: an increasing element-wise map


def pool_follower(graph, node, chain):
    """The MaxPool2d node that alone reads ``node``'s value (or its absorbed ``chain``'s last), or None."""
    last = chain[-1] if chain else node
    if last.name in graph.outputs or graph.use_count(last.name) != 1:
        return None
    follower = graph.node(graph.users(last.name)[0])
    return follower if follower.op == "MaxPool2d" and list(follower.inputs) == [last.name] else None


def every_window_touches_input(attrs, in_hw, out_hw) -> bool:
    """Whether every output of the pool has at least one tap inside the input, along both axes."""
    for axis in range(2):
        k, s = attrs["kernel_size"][axis], attrs["stride"][axis]
        d, begin = attrs.get("dilation", (1, 1))[axis], attrs["pads"][axis]
        covered = np.zeros(out_hw[axis], bool)
        for t in range(k):
            lo, hi = tap_range(out_hw[axis], in_hw[axis], t * d - begin, s)
            covered[lo:hi] = True
        if not covered.all():
            return False
    return True


class PoolBands:
    """The max pool of a convolution's output (C, N, Hc, Wc) computed band by band: ``conv_rows`` says which
    convolution rows a band of pooled rows needs, ``pool`` pools such a band (contiguous, from the GEMM) into
    the output, columns first (the flat strided runs of pooling.axis_passes need a contiguous source and
    target), then rows (row-strided views into the output's band)."""

    def __init__(self, spec: PoolSpec, conv_hw, epilogue_count: int):
        a = spec.attrs
        self.kernel, self.stride = a["kernel_size"], a["stride"]
        self.dilation = a.get("dilation", (1, 1))
        self.top, self.left = a["pads"][0], a["pads"][1]
        self.conv_hw, self.rows, self.width = tuple(conv_hw), spec.out_hw[0], spec.out_hw[1]
        increasing = spec.increasing[-epilogue_count:] if epilogue_count else ()
        # the epilogue runs after the pool when every map in it is increasing and no window is all padding
        self.after = (epilogue_count > 0 and all(increasing)
                      and every_window_touches_input(a, conv_hw, spec.out_hw))
        self.cols_pass = axis_passes(self.width, conv_hw[1], self.kernel[1], self.stride[1], self.dilation[1],
                                     self.left, 3, 4, flat=True)
        self._rows_pass = {}

    def conv_rows(self, a: int, b: int) -> tuple[int, int]:
        """The convolution's rows [c0, c1) that pooled rows [a, b) read (clipped to the convolution's)."""
        c0 = min(self.conv_hw[0], max(0, a * self.stride[0] - self.top))
        c1 = min(self.conv_hw[0], (b - 1) * self.stride[0] - self.top + (self.kernel[0] - 1) * self.dilation[0] + 1)
        return c0, max(c0, c1)

    def rows_pass(self, a: int, b: int):
        key = (a, b)
        if key not in self._rows_pass:
            c0, c1 = self.conv_rows(a, b)
            # pooled row a + o reads convolution row (a + o)·s + t·d − top, i.e. band row o·s + t·d − (top − a·s + c0)
            self._rows_pass[key] = axis_passes(b - a, c1 - c0, self.kernel[0], self.stride[0], self.dilation[0],
                                               self.top - a * self.stride[0] + c0, 2, 4)
        return self._rows_pass[key]

    def pool(self, band: np.ndarray, target: np.ndarray, a: int, b: int, temp: np.ndarray) -> None:
        """Max-pool the contiguous convolution band (C, n, c1 − c0, Wc) holding rows conv_rows(a, b) into
        ``target`` (C, n, b − a, Wo); ``temp`` is flat scratch of at least C·n·(c1 − c0)·Wo floats."""
        c, n, rows, _ = band.shape
        columns = temp[:c * n * rows * self.width].reshape(c, n, rows, self.width)
        run_passes(*self.cols_pass, band, columns, FILL, np.maximum)
        run_passes(*self.rows_pass(a, b), columns, target, FILL, np.maximum)


# --- stride-2 pools: the convolution computed in parity order, so that the pool's taps are contiguous ------------
PARITY_COLUMN_BYTES = 3 << 19   # columns per block (1.5 MiB): the block's convolution output stays in L2 for the pool
PARITY_MIN_PIXELS = 4096        # convolution outputs per image below which the blocks' Python costs more


def axis_taps(kernel: int, dilation: int, pad: int) -> list[tuple[int, int]]:
    """A stride-2 pool's taps along an axis as (parity, shift): tap t of output o reads convolution position
    2·o + t·d − pad, which is position o + shift of the sub-image of positions of that parity."""
    return [((t * dilation - pad) % 2, (t * dilation - pad) // 2) for t in range(kernel)]


def shifted_groups(kernel: int, step: int, dilation: int, base: int) -> list[tuple]:
    """Kernel taps i grouped by the phase (base + i·d) mod step they read: (phase, taps, first offset in the
    phase, offset step); as gemm.tap_groups, for positions shifted by ``base``."""
    groups = []
    for phase in range(step):
        taps = [i for i in range(kernel) if (base + i * dilation) % step == phase]
        if taps:
            offsets = [(base + i * dilation) // step for i in taps]
            steps = {b - a for a, b in zip(offsets, offsets[1:])}
            groups.append((phase, taps, offsets[0], steps.pop() if steps else 1))
    return groups


def phase_runs(groups: list[tuple]) -> list[tuple]:
    """shifted_groups' groups merged into runs of consecutive phases whose taps are the previous group's plus
    one, from the same offset with the same step: (first phase, run length, first group's taps, offset, step).
    A run is one strided view over the phases (the stem's 7 taps with step 4: phases 0-2 read taps {0, 4},
    {1, 5}, {2, 6}), so a sub-image's columns are gathered by 4-9 copies instead of 16."""
    runs = []
    for phase, taps, offset, step in groups:
        if runs:
            first, count, run_taps, run_offset, run_step = runs[-1]
            if (phase == first + count and offset == run_offset and step == run_step
                    and taps == [t + count for t in run_taps]):
                runs[-1] = (first, count + 1, run_taps, run_offset, run_step)
                continue
        runs.append((phase, 1, taps, offset, step))
    return runs


def parity_conv_pool(ctx, weight, bias, finish, spec: PoolSpec, epilogue_count: int):
    """A convolution with a stride-2 max pool behind it, or None when the pool's taps reach further than one
    position either side of their parity sub-image (PoolBands then does it).

    The convolution's output is computed as its four parity sub-images (even/odd rows × even/odd columns),
    each a convolution of twice the stride read from a phase split of the input by that doubled stride; every
    sub-image row runs over the phase's full width (a few extra columns, set to the pool's fill), so that
    each tap's columns are one contiguous run. The pool then combines whole sub-images shifted by −1, 0 or 1
    position: long contiguous runs, where the natural order needs a stride-2 view per tap."""
    from .gemm import BIAS_IN_PRODUCT

    p = spec.attrs
    if tuple(p["stride"]) != (2, 2) or not BIAS_IN_PRODUCT:
        return None
    pool_dilation = p.get("dilation", (1, 1))
    taps = [axis_taps(p["kernel_size"][x], pool_dilation[x], p["pads"][x]) for x in range(2)]
    if any(s not in (-1, 0, 1) for axis in taps for _, s in axis) or not all(any(s == 0 for _, s in axis)
                                                                           for axis in taps):
        return None
    a = ctx.attrs
    cin, n, h, w = ctx.physical(ctx.in_shapes[0])
    cout, _, ho, wo = ctx.physical(ctx.out_shape)
    if ho * wo < PARITY_MIN_PIXELS:
        return None
    (kh, kw), (sh, sw), (dh, dw), groups = a["kernel_size"], a["stride"], a["dilation"], a["groups"]
    cin_g, cout_g, k = cin // groups, cout // groups, cin // groups * kh * kw
    hp, wp = spec.out_hw
    count = [[-(-(size - e) // 2) for e in (0, 1)] for size in (ho, wo)]     # positions of each parity
    doubled = (2 * sh, 2 * sw)                 # the sub-images' stride
    rows_of = [shifted_groups(kh, doubled[0], dh, sh * e) for e in (0, 1)]
    cols_of = [shifted_groups(kw, doubled[1], dw, sw * e) for e in (0, 1)]
    row_runs, col_runs = [phase_runs(g) for g in rows_of], [phase_runs(g) for g in cols_of]
    reach = [max(g[2] + g[3] * (len(g[1]) - 1) for parity in axis for g in parity) for axis in (rows_of, cols_of)]
    # computed columns per sub-image row, the phase's width: at least one past the valid ones (set to the
    # fill), and room for the taps' offsets (valid columns never wrap into the next row)
    width = max(max(count[1]) + max(1, reach[1]), wp + 1)
    matrices = [np.concatenate([weight[g * cout_g:(g + 1) * cout_g].reshape(cout_g, k),
                                bias[g * cout_g:(g + 1) * cout_g, None] if bias is not None
                                else np.zeros((cout_g, 1), np.float32)], axis=1).astype(np.float32)
                for g in range(groups)]
    bands = PoolBands(spec, (ho, wo), epilogue_count)
    after = bands.after

    # blocks: (image, pooled rows [r0, r1)), each with at most PARITY_COLUMN_BYTES of columns per sub-image
    per_row = (k + 1) * 2 * width * 4                  # column bytes of a sub-image per pooled row (≈ 2 rows)
    band = max(1, min(hp, PARITY_COLUMN_BYTES // per_row))
    macs = cout * k * n * ho * wo
    workers = batch_split.WORKERS if macs >= 2 * batch_split.MIN_PIECE_MACS else 1
    if workers > 1:                            # as many blocks for every core
        band = batch_split.even_band(hp, band, n)
    blocks = [(image, r0, min(hp, r0 + band)) for image in range(n) for r0 in range(0, hp, band)]

    def sub_rows(r0, r1):
        """Per row parity e, the sub-image rows [lo, hi) that pooled rows [r0, r1) read."""
        c0, c1 = bands.conv_rows(r0, r1)
        return [(min(count[0][e], max(0, (c0 - e + 1) // 2)), min(count[0][e], max(0, (c1 - e + 1) // 2)))
                for e in (0, 1)]

    spans = {(r0, r1): sub_rows(r0, r1) for _, r0, r1 in blocks}
    most = max(hi - lo for s in spans.values() for lo, hi in s)
    # each block splits the phase rows [q0, q1) it reads, of one image, into its worker's buffer: no serial
    # pass over the whole input before the parts start, and the phases are in cache for the gather. The
    # padded rows [q0·S, q1·S) go to a window buffer (zeros around the input), then one transposed copy
    # makes all the phases: 6 NumPy calls, where phase_split's 5 calls a phase made 80 for the stem's 16
    windows = {}
    top, left = a["pads"][0], a["pads"][1]
    for r0, r1 in spans:
        q0 = min(lo for lo, _ in spans[r0, r1])
        q1 = max(hi for _, hi in spans[r0, r1]) + reach[0] + 1      # + the last run's spill
        y0 = q0 * doubled[0] - top                                   # the input row at the window's top
        inside = max(0, -y0), max(0, min(doubled[0] * (q1 - q0), h - y0))
        windows[r0, r1] = (q0, q1, y0, (inside[0], max(inside)), min(w, doubled[1] * width - left))
    split_rows = max(q1 - q0 for q0, q1, *_ in windows.values())
    # a block's arrays hold, per channel, sub-image rows r0 − 1 … r1 (band + 2 rows; those not computed are
    # the fill): every tap of both passes is then the same flat shift of a whole contiguous array
    rows = band + 2
    buffers = [(ctx.scratch.request((k + 1, most * width)), ctx.scratch.request((2, cout_g * rows * width)),
                ctx.scratch.request((2, cout_g * rows * width)), ctx.scratch.request((cout_g * rows * width,)),
                ctx.scratch.request((2, doubled[0] * doubled[1] * cin * split_rows * width)))
               for _ in range(workers)]
    shaped = {}                                  # (worker's window buffers, rows) -> (window, phases) views

    def split(x_image, flat, window):
        """The window's phases (S0, S1, C, 1, rows, width) from one image (C, 1, H, W), in ``flat``'s views."""
        q0, q1, y0, (lo, hi), cols = window
        known = shaped.get((id(flat), q1 - q0))
        if known is None or known[0] is not flat:
            size = doubled[0] * doubled[1] * cin * (q1 - q0) * width
            known = shaped[id(flat), q1 - q0] = (
                flat, flat[0, :size].reshape(cin, 1, doubled[0] * (q1 - q0), doubled[1] * width),
                flat[1, :size].reshape(doubled[0], doubled[1], cin, 1, q1 - q0, width))
        padded, phases = known[1], known[2]
        padded[:, :, :lo] = 0.0
        padded[:, :, hi:] = 0.0
        padded[:, :, lo:hi, :left] = 0.0
        padded[:, :, lo:hi, left + cols:] = 0.0
        padded[:, :, lo:hi, left:left + cols] = x_image[:, :, y0 + lo:y0 + hi, :cols]
        np.copyto(phases, padded.reshape(cin, 1, q1 - q0, doubled[0], width, doubled[1]).transpose(3, 5, 0, 1, 2, 4))
        return phases
    gathers = {}                                 # (block, group, segment) -> its copies, for the current buffers

    def copies(phases, q0, g, er, ec, lo, hi, cols) -> list:
        """(target, source) views gathering the columns of sub-image (er, ec), rows [lo, hi), into cols, rows
        in the weight's (channel, i, j) order, from ``phases`` holding phase rows q0 … of one image: one copy
        per pair of phase runs (phase_runs). Built once per scratch binding: as_strided costs ~8 µs a call, a
        copy ~2 µs."""
        pairs, row_bytes = [], cols.strides[0]
        s_pr, s_pc = phases.strides[:2]
        for (pr, nr, ri, i0, di) in row_runs[er]:
            for (pc, nc, rj, j0, dj) in col_runs[ec]:
                source = phases[pr, pc, g * cin_g:(g + 1) * cin_g, 0]
                s_c, s_h, s_w = source.strides
                shape = (cin_g, nr, len(ri), nc, len(rj), (hi - lo) * width)
                view = as_strided(source[:, lo - q0 + i0:, j0:], shape=shape,
                                  strides=(s_c, s_pr, di * s_h, s_pc, dj * s_w, s_w), writeable=False)
                tap_i = ri[1] - ri[0] if len(ri) > 1 else 1
                tap_j = rj[1] - rj[0] if len(rj) > 1 else 1
                target = as_strided(cols[ri[0] * kw + rj[0]:], shape=shape,
                                    strides=(kh * kw * row_bytes, kw * row_bytes, tap_i * kw * row_bytes, row_bytes,
                                             tap_j * row_bytes, 4))
                pairs.append((target, view))
        return pairs

    def combine(taps_of, arrays, target, step_size: int):
        """target = the max over taps (parity e, shift s) of arrays[e] shifted by s·step_size, all flat; the
        positions a shift leaves out hold rows or columns the result does not keep."""
        spans = []
        for e, s in sorted(taps_of, key=lambda t: t[1] != 0):
            lo, hi = max(0, -s * step_size), target.size - max(0, s * step_size)
            spans.append(((lo, hi), arrays[e][lo + s * step_size:hi + s * step_size]))
        (lo, hi), source = spans[0]
        if lo or hi < target.size:
            target[:lo] = FILL
            target[hi:] = FILL
        if len(spans) > 1 and spans[1][0] == (lo, hi):       # the first two taps in one pass
            np.maximum(source, spans.pop(1)[1], out=target[lo:hi])
        else:
            np.copyto(target[lo:hi], source)
        for (lo, hi), source in spans[1:]:
            np.maximum(target[lo:hi], source, out=target[lo:hi])

    def run_blocks(x, out, todo, buffer):
        cols_buffer, conv_buffer, parts_buffer, pooled_buffer, phase_buffer = (get() for get in buffer)
        for image, r0, r1 in todo:
            span, size = spans[r0, r1], cout_g * (r1 - r0 + 2) * width     # flat, contiguous arrays
            q0 = windows[r0, r1][0]
            phases = split(x[:, image:image + 1], phase_buffer, windows[r0, r1])
            cols_buffer[k] = 1.0                            # the bias's row
            for g in range(groups):
                channels = slice(g * cout_g, (g + 1) * cout_g)
                for er in (0, 1):
                    lo, hi = span[er]
                    for ec in (0, 1):
                        known = gathers.get((image, r0, g, er, ec))
                        if known is None or known[0] is not phases or known[1] is not cols_buffer:
                            known = gathers[image, r0, g, er, ec] = (phases, cols_buffer, copies(
                                phases, q0, g, er, ec, lo, hi, cols_buffer))
                        for target, view in known[2]:
                            np.copyto(target, view)
                        conv = conv_buffer[ec, :size].reshape(cout_g, r1 - r0 + 2, width)
                        first = lo - (r0 - 1)                   # where sub-image row lo goes
                        np.matmul(matrices[g], cols_buffer[:, :(hi - lo) * width],
                                  out=np.reshape(conv[:, first:first + hi - lo], (cout_g, -1), copy=False))
                        finish(conv[:, None, first:first + hi - lo], channels, biased=True, layers=not after)
                        conv[:, :first] = FILL
                        conv[:, first + hi - lo:] = FILL
                        conv[:, :, count[1][ec]:] = FILL        # the columns past the sub-image
                    combine(taps[1], conv_buffer[:, :size], parts_buffer[er, :size], 1)
                pooled = pooled_buffer[:size]
                combine([(e, s + 1) for e, s in taps[0]], parts_buffer[:, :size], pooled, width)
                if after:
                    finish(pooled.reshape(cout_g, 1, -1, width), channels, biased=True)
                np.copyto(out[channels, image, r0:r1], pooled.reshape(cout_g, -1, width)[:, :r1 - r0, :wp])

    def step(inputs, out):
        parts = batch_split.kernel_parts(len(blocks), macs) if workers > 1 else [(0, len(blocks))]
        batch_split.in_parallel([partial(run_blocks, inputs[0], out, blocks[b0:b1], buffers[i])
                                 for i, (b0, b1) in enumerate(parts)])
        return out
    return step
