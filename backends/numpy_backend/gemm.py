"""Convolution and Linear as matrix products through NumPy's BLAS.

In the cnhw layout a convolution over the whole batch is W (Cout, Cin·kh·kw) @ cols (Cin·kh·kw, N·Ho·Wo),
whose result *is* the output tensor (Cout, N, Ho, Wo): no transpose. A 1×1 stride-1 convolution needs no
im2col at all. The columns are gathered through one strided view of the (padded) input, batch chunk by batch
chunk so that they stay in cache; depthwise convolutions, where a GEMM would have a single row, go to
depthwise.py. Plain 3×3 stride-1 convolutions of 32+ channels go to winograd.py,
which does 2.25–4× fewer multiplications.
"""
from __future__ import annotations

from functools import partial

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import batch_split, depthwise, fused_pool, winograd
from .kernel import CNHW, NCHW, kernel

COLUMN_BYTES = 4 << 20          # im2col block budget: the columns stay in L2/L3 between copy and GEMM (the stem at
                                # batch 1, single-threaded: 3.1-3.7 ms with 2-4 MB, 3.3-4.2 with 8 MB, 3.9-4.8 with 0.5)
BIAS_IN_PRODUCT = True          # im2col: the bias as a K + 1st column of the product (False: a pass after it, to compare)
SKINNY_ROWS = 32                # Linear: up to this many rows, W @ xᵀ (see make_linear)
BLOCK_SPLIT_COLUMNS = 1024      # split a convolution over the cores by output pixels when each part gets this many


def padded_source(in_shape, pads, extent, fill: float, scratch):
    """A function placing its (C, N, H, W) input in a scratch buffer of spatial size at least ``extent``, at
    offset (top, left), the rest set to ``fill``; the identity when no padding is needed. Only the border is
    filled at run time, the interior being overwritten anyway."""
    top, left = pads[0], pads[1]
    c, n, h, w = in_shape
    hp, wp = max(extent[0], top + h), max(extent[1], left + w)
    if (top, left, hp, wp) == (0, 0, h, w):
        return lambda source: source
    get = scratch.request((c, n, hp, wp))

    def pad(source):
        buffer = get()
        buffer[:, :, :top] = fill
        buffer[:, :, top + h:] = fill
        buffer[:, :, top:top + h, :left] = fill
        buffer[:, :, top:top + h, left + w:] = fill
        buffer[:, :, top:top + h, left:left + w] = source
        return buffer
    return pad


def window_view(xp: np.ndarray, kernel_size, stride, dilation, out_hw):
    """(C, kh, kw, N, Ho, Wo) view of every kernel tap of every output pixel, without copying."""
    c, n = xp.shape[:2]
    s_c, s_n, s_h, s_w = xp.strides
    return as_strided(xp, shape=(c, kernel_size[0], kernel_size[1], n, out_hw[0], out_hw[1]),
                      strides=(s_c, dilation[0] * s_h, dilation[1] * s_w, s_n, stride[0] * s_h, stride[1] * s_w),
                      writeable=False)


def tap(xp: np.ndarray, i: int, j: int, stride, dilation, out_hw) -> np.ndarray:
    """The (C, N, Ho, Wo) view of input pixels that kernel tap (i, j) multiplies."""
    h0, w0 = i * dilation[0], j * dilation[1]
    return xp[:, :, h0:h0 + stride[0] * (out_hw[0] - 1) + 1:stride[0], w0:w0 + stride[1] * (out_hw[1] - 1) + 1:stride[1]]


def conv_route(ctx) -> str:
    """Which kernel computes the convolution: "winograd", "depthwise", "pointwise" (1×1 stride 1) or "im2col"."""
    a = ctx.attrs
    cin, n = ctx.physical(ctx.in_shapes[0])[:2]
    cout, _, ho, wo = ctx.physical(ctx.out_shape)
    if winograd.tile_size(a, cin, cout, n, (ho, wo)) is not None:
        return "winograd"
    if a["groups"] == cin and cin > 1:
        return "depthwise"
    if tuple(a["kernel_size"]) == (1, 1) and a["stride"] == (1, 1) and a["pads"] == (0, 0, 0, 0) and a["groups"] == 1:
        return "pointwise"
    return "im2col"


def hosts_pool(ctx) -> bool:
    """Whether make_conv can run the max pool behind the convolution inside its bands (fused_pool.py)."""
    return conv_route(ctx) == "im2col"


@kernel("Conv2d", layouts=(CNHW,), hosts_epilogue=True, hosts_pool=hosts_pool)
def make_conv(ctx):
    a = ctx.attrs
    cin, n, h, w = ctx.physical(ctx.in_shapes[0])
    cout, _, ho, wo = ctx.physical(ctx.out_shape)
    kh, kw = a["kernel_size"]
    weight, bias, epilogue = fold_affine(ctx.params["weight"], ctx.params.get("bias"), ctx.epilogue)

    def finish(region, channels: slice, biased: bool = False, layers: bool = True):
        """Bias (unless the product added it: ``biased``), then the absorbed element-wise layers (unless not
        ``layers``), on a block of the output while it is in cache."""
        if bias is not None and not biased:
            region += bias[channels, None, None, None]
        for apply in epilogue if layers else ():
            apply(region, channels)

    route = conv_route(ctx)
    if route == "winograd":
        return winograd.winograd_conv(ctx, weight, winograd.tile_size(a, cin, cout, n, (ho, wo)), finish)
    if route == "depthwise":
        return depthwise.depthwise_conv(ctx, weight, bias, epilogue)
    pool = None
    if ctx.pool is not None:                        # a max pool the plan fused in (hosts_pool said yes)
        step = fused_pool.parity_conv_pool(ctx, weight, bias, finish, ctx.pool, len(epilogue))
        if step is not None:
            return step
        pool = fused_pool.PoolBands(ctx.pool, (ho, wo), len(epilogue))
    extent = ((ho - 1) * a["stride"][0] + (kh - 1) * a["dilation"][0] + 1,
              (wo - 1) * a["stride"][1] + (kw - 1) * a["dilation"][1] + 1)
    pad = padded_source((cin, n, h, w), a["pads"], extent, 0.0, ctx.scratch)

    if route == "pointwise":
        return pointwise_gemm(ctx, weight, finish)
    return im2col_gemm(ctx, weight, bias, pad, finish, pool)


def pointwise_gemm(ctx, weight, finish):
    """A 1×1 stride-1 convolution: W (Cout, Cin) @ the stored input (Cin, N·H·W), no im2col. Inside
    batch_split.inference_threads, one part per core: images (or rows of one image) when there are many
    pixels, else output channels."""
    cin, n, h, w = ctx.physical(ctx.in_shapes[0])
    cout = ctx.out_shape[1]
    matrix = weight.reshape(cout, cin)
    macs = cout * cin * n * h * w
    by_pixels = n * h * w >= batch_split.WORKERS * BLOCK_SPLIT_COLUMNS
    units = (n if n > 1 else h) if by_pixels else cout

    def part(x, out, lo, hi):
        if by_pixels:
            index = (slice(None), slice(lo, hi)) if n > 1 else (slice(None), slice(None), slice(lo, hi))
            region = out[index]
            np.matmul(matrix, np.reshape(x[index], (cin, -1), copy=False),
                      out=np.reshape(region, (cout, -1), copy=False))
            finish(region, slice(None))
        else:
            np.matmul(matrix[lo:hi], x.reshape(cin, -1), out=np.reshape(out[lo:hi], (hi - lo, -1), copy=False))
            finish(out[lo:hi], slice(lo, hi))

    def pointwise(inputs, out):
        batch_split.in_parallel([partial(part, inputs[0], out, lo, hi)
                                 for lo, hi in batch_split.kernel_parts(units, macs)])
        return out
    return pointwise


def phase_split(in_shape, pads, stride, extent, phases, scratch):
    """A function writing the zero-padded (C, N, H, W) input of a strided convolution as its phases: buffer
    (sh, sw, C, N, Hq, Wq), phase (p, q) holding the padded rows p, p + sh, … and columns q, q + sw, …. A
    kernel tap then reads one phase with stride 1, so the columns are gathered as contiguous runs of pixels;
    gathering them straight from the padded input reads one float in ``sw``, which NumPy copies slower.
    Only the ``phases`` that hold taps are written. One strided pass over the input pays for it."""
    c, n, h, w = in_shape
    (sh, sw), (top, left) = stride, pads[:2]
    hq, wq = -(-extent[0] // sh), -(-extent[1] // sw)
    get = scratch.request((sh, sw, c, n, hq, wq))

    def inside(phase, step, begin, size, count):
        """[lo, hi) of the phase's rows that hold input rows, and the first input row."""
        lo = min(count, max(0, -(-(begin - phase) // step)))
        hi = max(lo, min(count, -(-(begin + size - phase) // step)))
        return lo, hi, phase + step * lo - begin

    rows = [inside(p, sh, top, h, hq) for p in range(sh)]
    cols = [inside(q, sw, left, w, wq) for q in range(sw)]

    def split(source):
        buffer = get()
        for p, q in phases:
            (r0, r1, y0), (c0, c1, x0), phase = rows[p], cols[q], buffer[p, q]
            phase[:, :, :r0] = 0.0
            phase[:, :, r1:] = 0.0
            phase[:, :, r0:r1, :c0] = 0.0
            phase[:, :, r0:r1, c1:] = 0.0
            phase[:, :, r0:r1, c0:c1] = source[:, :, y0::sh, x0::sw][:, :, :r1 - r0, :c1 - c0]
        return buffer
    return split


def tap_groups(kernel_size, stride, dilation) -> list[tuple]:
    """The kernel taps grouped by the input phase they read: ((p, q), rows, cols, (i0, j0), (di, dj)) with the
    kernel rows and columns of the group, the first tap's offset in the phase and the step between taps
    (taps i·d with i·d ≡ p mod s are an arithmetic progression in the phase)."""
    def axis(k, s, d):
        groups = []
        for p in range(s):
            taps = [i for i in range(k) if i * d % s == p]
            if taps:
                offsets = [i * d // s for i in taps]
                steps = {b - a for a, b in zip(offsets, offsets[1:])}
                groups.append((p, taps, offsets[0], steps.pop() if steps else 1))
        return groups
    return [((p, q), ri, rj, (i0, j0), (di, dj))
            for p, ri, i0, di in axis(kernel_size[0], stride[0], dilation[0])
            for q, rj, j0, dj in axis(kernel_size[1], stride[1], dilation[1])]


def im2col_gemm(ctx, weight, bias, pad, finish, pool=None):
    """Gather the columns of a block of the output through one strided view per tap group, one GEMM per
    group of channels and block. A block is a batch chunk, or a band of output rows of one image when an
    image's columns exceed COLUMN_BYTES, so that they stay in cache between the copy and the GEMM. Strided
    convolutions with several taps gather from the input's phases (phase_split) instead of the padded input.
    The bias rides in the product: a last weight column times a row of ones below the columns (the GEMM took
    as long with K + 1 as with K; a separate pass over the output cost 15–30% of a 1×1 stride-2 convolution).
    With a fused max pool (``pool``, a fused_pool.PoolBands), the blocks are bands of the pool's output rows:
    each computes the convolution rows its band reads into a scratch band, then pools it into the output."""
    a = ctx.attrs
    cin, n, h, w = ctx.physical(ctx.in_shapes[0])
    cout, _, ho, wo = ctx.physical(ctx.out_shape)
    kh, kw = a["kernel_size"]
    groups = a["groups"]
    cin_g, cout_g = cin // groups, cout // groups
    k = cin_g * kh * kw
    if a["stride"] != (1, 1) and kh * kw > 1:
        taps = tap_groups(a["kernel_size"], a["stride"], a["dilation"])
        extent = ((ho - 1) * a["stride"][0] + (kh - 1) * a["dilation"][0] + 1,
                  (wo - 1) * a["stride"][1] + (kw - 1) * a["dilation"][1] + 1)
        source = phase_split((cin, n, h, w), a["pads"], a["stride"], extent, [t[0] for t in taps], ctx.scratch)
        step_hw = (1, 1)
    else:                                   # one phase: the padded input, read with the convolution's stride
        taps = [((0, 0), list(range(kh)), list(range(kw)), (0, 0), a["dilation"])]
        source = lambda x: pad(x)[None, None]       # noqa: E731
        step_hw = a["stride"]
    # the weight's columns in the order the taps are gathered: group by group
    order = [(c * kh + i) * kw + j for _, ri, rj, _, _ in taps for c in range(cin_g) for i in ri for j in rj]
    matrices = [np.ascontiguousarray(weight[g * cout_g:(g + 1) * cout_g].reshape(cout_g, k)[:, order])
                for g in range(groups)]
    k_rows = k                                  # rows of the columns: k, plus the ones of the bias
    if bias is not None and BIAS_IN_PRODUCT:
        matrices = [np.concatenate([m, bias[g * cout_g:(g + 1) * cout_g, None]], axis=1).astype(np.float32)
                    for g, m in enumerate(matrices)]
        k_rows = k + 1
    out_rows, row_step = (pool.rows, pool.stride[0]) if pool else (ho, 1)     # rows the blocks cut, and
    per_image = k * ho * wo * 4                                                # convolution rows per such row
    if per_image <= COLUMN_BYTES:
        chunk, band = max(1, min(n, COLUMN_BYTES // per_image)), out_rows
    else:
        chunk, band = 1, max(1, min(out_rows, COLUMN_BYTES // (k * wo * 4 * row_step)))
    # inside batch_split.inference_threads, one part per core: blocks of output pixels when there are many
    # columns, else rows of output channels over shared columns (each part then reads its share of the weight)
    macs = cout * k * n * ho * wo
    workers = batch_split.WORKERS if macs >= 2 * batch_split.MIN_PIECE_MACS else 1
    split_blocks = workers > 1 and n * ho * wo >= workers * BLOCK_SPLIT_COLUMNS
    if split_blocks and -(-n // chunk) * -(-out_rows // band) < workers:
        if n >= workers:
            chunk = -(-n // workers)
        else:
            chunk, band = 1, -(-out_rows // -(-workers // n))
    if split_blocks and chunk == 1:                # bands per image such that the parts get as many blocks
        band = batch_split.even_band(out_rows, band, n)
    blocks = [(n0, min(n, n0 + chunk), r0, min(out_rows, r0 + band))
              for n0 in range(0, n, chunk) for r0 in range(0, out_rows, band)]
    spans = {(r0, r1): pool.conv_rows(r0, r1) if pool else (r0, r1) for _, _, r0, r1 in blocks}
    span = max(s1 - s0 for s0, s1 in spans.values())     # the most convolution rows a block computes
    buffers = workers if split_blocks else 1
    columns = [ctx.scratch.request((k_rows * chunk * span * wo,)) for _ in range(buffers)]
    if pool:                                   # per buffer: the convolution's band, and the pool's column pass
        bands = [(ctx.scratch.request((cout * chunk * span * wo,)),
                  ctx.scratch.request((cout * chunk * span * pool.width,))) for _ in range(buffers)]
        for r0, r1 in spans:
            pool.rows_pass(r0, r1)             # built now, not in the parts' threads
    else:
        bands = [None] * buffers
    split_channels = workers > 1 and not split_blocks and groups == 1

    def gather(phases, g, n0, n1, r0, r1, cols):
        """Copy the columns of channel group g, images [n0, n1), output rows [r0, r1) into cols."""
        row = 0
        for (p, q), ri, rj, (i0, j0), (di, dj) in taps:
            image = phases[p, q, g * cin_g:(g + 1) * cin_g, n0:n1]
            s_c, s_n, s_h, s_w = image.strides
            shape = (cin_g, len(ri), len(rj), n1 - n0, r1 - r0, wo)
            view = as_strided(image[:, :, r0 * step_hw[0] + i0:, j0:], shape=shape,
                              strides=(s_c, di * s_h, dj * s_w, s_n, step_hw[0] * s_h, step_hw[1] * s_w),
                              writeable=False)
            size = cin_g * len(ri) * len(rj)
            np.copyto(np.reshape(cols[row:row + size], shape, copy=False), view)
            row += size

    def product(g, cols, region, c0, c1, pooled=None):
        """Output channels [c0, c1) of group g from its columns, then their epilogue; with ``pooled`` (the
        pool's target rows [r0, r1) and scratch), their max pool, the epilogue before or after it."""
        channels = slice(g * cout_g + c0, g * cout_g + c1)
        np.matmul(matrices[g][c0:c1], cols, out=np.reshape(region[c0:c1], (c1 - c0, -1), copy=False))
        if pooled is None:
            finish(region[c0:c1], channels, biased=k_rows > k)
            return
        target, r0, r1, temp = pooled
        finish(region[c0:c1], channels, biased=k_rows > k, layers=not pool.after)
        pool.pool(region[c0:c1], target[c0:c1], r0, r1, temp[c0 * region[0].size // wo * pool.width:])
        if pool.after:
            finish(target[c0:c1], channels, biased=True)

    def run_blocks(phases, out, todo, buffer, band):
        for n0, n1, r0, r1 in todo:
            s0, s1 = spans[r0, r1]                  # the convolution rows the block computes
            cols = buffer()[:k_rows * (n1 - n0) * (s1 - s0) * wo].reshape(k_rows, -1)
            cols[k:] = 1.0                          # the bias's row (the scratch is shared: every run)
            if pool:
                conv = band[0]()[:cout * (n1 - n0) * (s1 - s0) * wo].reshape(cout, n1 - n0, s1 - s0, wo)
            for g in range(groups):
                gather(phases, g, n0, n1, s0, s1, cols)
                mine = slice(g * cout_g, (g + 1) * cout_g)
                region = conv[mine] if pool else out[mine, n0:n1, r0:r1]
                pooled = (out[mine, n0:n1, r0:r1], r0, r1, band[1]()) if pool else None
                parts = batch_split.kernel_parts(cout_g, macs) if split_channels else [(0, cout_g)]
                batch_split.in_parallel([partial(product, g, cols, region, c0, c1, pooled) for c0, c1 in parts])

    def step(inputs, out):
        phases = source(inputs[0])
        parts = batch_split.kernel_parts(len(blocks), macs) if split_blocks else [(0, len(blocks))]
        batch_split.in_parallel([partial(run_blocks, phases, out, blocks[b0:b1], columns[i], bands[i])
                                 for i, (b0, b1) in enumerate(parts)])
        return out
    return step


@kernel("Linear", layouts=(NCHW,))
def make_linear(ctx):
    """x (rows, in) @ Wᵀ: through a transposed view of the weight (BLAS's trans flag), except for a few rows
    (2..SKINNY_ROWS), where OpenBLAS ran x @ Wᵀ 2-2.5× slower than W @ xᵀ (resnet18's fc at batch 4: 450 against
    205 µs on one core): those compute (out, rows) into scratch and copy it back transposed."""
    weight = ctx.params["weight"]
    weight_t = weight.T                         # a transposed view: BLAS reads it with the trans flag
    bias = ctx.params.get("bias")
    features = ctx.in_shapes[0][-1]
    rows = int(np.prod(ctx.in_shapes[0][:-1]))
    out_features = weight.shape[0]
    skinny = 2 <= rows <= SKINNY_ROWS
    transposed = ctx.scratch.request((out_features, rows)) if skinny else None

    def part(x, flat, lo, hi):
        """Output features [lo, hi): one part per core inside batch_split.inference_threads."""
        region = flat[:, lo:hi]
        if skinny:
            block = transposed()[lo:hi]
            np.matmul(weight[lo:hi], x.T, out=block)
            np.copyto(region, block.T)
        else:
            np.matmul(x, weight_t[:, lo:hi], out=region)
        if bias is not None:
            region += bias[lo:hi]
        for apply in ctx.epilogue:                  # a fused activation (element-wise: channels unused)
            apply(region, slice(None))

    def step(inputs, out):
        x, flat = inputs[0].reshape(rows, features), out.reshape(rows, -1)
        batch_split.in_parallel([partial(part, x, flat, lo, hi)
                                 for lo, hi in batch_split.kernel_parts(out_features, rows * features * out_features)])
        return out
    return step


def fold_affine(weight, bias, epilogue):
    """The BatchNorms right behind a convolution (epilogues with ``affine`` = per-channel scale and shift)
    folded into its weight and bias, as onnxruntime does: a pass over the output less per BatchNorm, for a
    scaled copy of the weight; equal within rounding."""
    epilogue = list(epilogue)
    while epilogue and getattr(epilogue[0], "affine", None) is not None:
        scale, shift = (np.asarray(v, np.float32).reshape(-1) for v in epilogue.pop(0).affine)
        weight = weight * scale.reshape(-1, *[1] * (weight.ndim - 1))
        bias = shift if bias is None else bias * scale + shift
    return weight, bias, epilogue
