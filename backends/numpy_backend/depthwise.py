"""Depthwise convolution (groups == in_channels, out = k·in) as a few long, contiguous NumPy operations.

Output channel c·k + j is a weighted sum of kh·kw pixels of input channel c: there is no reduction over
channels, so no GEMM for BLAS. Summed view by view over the whole tensor (the former kernel), each tap cost a
multiply and an add over rows as short as the image, and the tensor went through memory twice per tap.
Instead:

1. The input is copied once into a zero-bordered buffer per stride phase: phase (a, b) holds the padded
   input's rows a, a + sh, … and columns b, b + sw, …, so a tap of a strided convolution is a stride-1 tap
   of one phase. Output pixel (n, y, x) is computed at the "wide" position n·image + y·wq + x of its
   channel: every kernel tap of every output pixel is then one contiguous run of the flattened phase, at
   an offset that depends on the tap only, and the taps reading one phase form a grid of offsets — one
   strided view. The positions past a row's last output pixel (x ≥ wo) and past an image's last row sum
   real pixels and padding, and are dropped at the end.
2. Block by block, small enough to stay in L2: one multiply per phase writes every tap's products, one
   matrix-vector product (BLAS) sums them, and the bias and the absorbed element-wise layers (ReLU6, …; a
   BatchNorm right behind is already folded into weight and bias, see gemm.fold_affine) run on the block
   while it is in cache.
3. The output pixels are copied out of the wide positions (channel-major: block by block, adding the bias
   on the way).

Two layouts of the phases, chosen by the image's length: channel-major (cnhw, blocks of channels; a tap is a
(channels, positions) run times a per-channel scale) for long images, where rows are long; pixel-major
(channels last, blocks of positions; a tap is one contiguous run times a small tile of the scales, built
once, repeated over the block) for the short images of many channels deep in a network, where a per-channel scale
broadcast over rows of a few dozen positions would cost more in loop overhead than in arithmetic.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

BLOCK_BYTES = 512 << 10         # one block's tap products: kept in L2 between the multiplies and their sum
TILE_ELEMENTS = 4096            # pixel-major: a tile of scales covers this many (position, channel) pairs
CHANNEL_MAJOR_POSITIONS = 1024  # images of this many wide positions or more run channel-major


def phase_plan(length: int, pad: int, stride: int, phase: int, extent: int) -> tuple[int, int, int]:
    """For one axis of phase ``phase``: its first and end position holding input (the rest is padding), and
    the input index of the first."""
    first = min(extent, max(0, -(-(pad - phase) // stride)))
    end = min(extent, max(first, -(-(pad + length - phase) // stride)))
    return first, end, first * stride + phase - pad


def depthwise_conv(ctx, weight, bias, epilogue):
    """The step of a Conv2d with groups == in_channels in the cnhw layout; the epilogue's ``apply(region,
    channels)`` run on blocks of the output."""
    geometry = Geometry(ctx)
    if geometry.wide >= CHANNEL_MAJOR_POSITIONS:
        return channel_major(ctx, geometry, weight, bias, epilogue)
    return pixel_major(ctx, geometry, weight, bias, epilogue)


class Geometry:
    """Where each kernel tap of each output pixel lies in the phase buffers (see the module docstring).

    The taps reading one phase form a grid: rows i ≡ a, columns j ≡ b (modulo the stride, after dilation),
    at offsets base + u·row_step + v·column_step in the flattened phase. ``grids`` lists them as
    (phase, base, (rows, row_step), (columns, column_step), kernel taps i·kw + j in grid order), so that one
    strided view multiplies every tap of a grid at once."""

    def __init__(self, ctx):
        a = ctx.attrs
        self.cin, self.n, self.h, self.w = ctx.physical(ctx.in_shapes[0])
        self.cout, _, self.ho, self.wo = ctx.physical(ctx.out_shape)
        self.multiplier = self.cout // self.cin
        kh, kw = a["kernel_size"]
        self.stride = (sh, sw) = a["stride"]
        dh, dw = a["dilation"]
        top, left = a["pads"][0], a["pads"][1]
        self.hq = self.ho + (kh - 1) * dh // sh                              # rows and columns of a phase
        self.wq = self.wo + (kw - 1) * dw // sw
        self.image = self.hq * self.wq
        self.wide = (self.n - 1) * self.image + (self.ho - 1) * self.wq + self.wo   # positions computed
        self.phases, self.grids, self.axes = [], [], []
        for pa in sorted({i * dh % sh for i in range(kh)}):
            for pb in sorted({j * dw % sw for j in range(kw)}):
                rows = [i for i in range(kh) if i * dh % sh == pa]
                columns = [j for j in range(kw) if j * dw % sw == pb]
                row_step = (rows[1] - rows[0]) * dh // sh * self.wq if len(rows) > 1 else 0
                column_step = (columns[1] - columns[0]) * dw // sw if len(columns) > 1 else 0
                base = rows[0] * dh // sh * self.wq + columns[0] * dw // sw
                self.grids.append((len(self.phases), base, (len(rows), row_step), (len(columns), column_step),
                                   [i * kw + j for i in rows for j in columns]))
                self.phases.append((pa, pb))
                self.axes.append((phase_plan(self.h, top, sh, pa, self.hq), phase_plan(self.w, left, sw, pb, self.wq)))
        self.order = [t for grid in self.grids for t in grid[4]]                 # kernel taps, grid by grid

    def fill(self, phase, index: int, source) -> None:
        """Write phase ``index`` of the padded (..., h, w) ``source`` into ``phase`` (..., hq, wq), a view, and
        zero its border (the padding): rows above and below, then the columns left and right of the input.
        (Zeroing the whole phase first cost a pass over memory: 0.25 ms of 96×112×112's 3.7.)"""
        (r0, r1, sr), (c0, c1, sc) = self.axes[index]
        sh, sw = self.stride
        phase[..., :r0, :] = 0.0
        phase[..., r1:, :] = 0.0
        phase[..., r0:r1, :c0] = 0.0
        phase[..., r0:r1, c1:] = 0.0
        if r1 > r0 and c1 > c0:
            phase[..., r0:r1, c0:c1] = source[..., sr:sr + (r1 - r0 - 1) * sh + 1:sh, sc:sc + (c1 - c0 - 1) * sw + 1:sw]


def blocks_for(buffer, build):
    """A function giving build()'s views of the scratch, made again when ``buffer()`` is another array: a plan
    whose steps run on lanes moves every step's scratch after its first, timed run."""
    cache = [None, None]                        # the buffer the views were made for, the views

    def blocks():
        if buffer() is not cache[0]:
            cache[:] = [buffer(), build()]
        return cache[1]
    return blocks


def channel_major(ctx, g: Geometry, weight, bias, epilogue):
    """Long images: cnhw phases, blocks of channels; each tap is a (channels, positions) slice times a
    per-channel scale. A block's output pixels go to the output with the bias added on the way (one pass),
    and the epilogue runs there, on the block's channels while they are in cache."""
    taps = len(g.order)
    cin, multiplier, wide = g.cin, g.multiplier, g.wide
    channels_per_block = max(1, min(cin, BLOCK_BYTES // (taps * multiplier * wide * 4)))
    source_buffer = ctx.scratch.request((len(g.phases), cin, g.n, g.hq, g.wq))
    products_buffer = ctx.scratch.request((taps, channels_per_block * multiplier * wide))
    sums_buffer = ctx.scratch.request((channels_per_block * multiplier, wide))  # one block's wide rows
    # weight[c·k + j, 0, i, l] -> (tap, c, j, 1) in grid order: per-tap, per-channel scales of a slice
    scales = np.ascontiguousarray(weight.reshape(cin, multiplier, -1)[:, :, g.order].transpose(2, 0, 1))[..., None]
    ones = np.ones(taps, np.float32)
    pixel_strides = (wide * 4, g.image * 4, g.wq * 4, 4)                      # output pixels in the wide rows
    shift = None if bias is None else np.asarray(bias, np.float32).reshape(-1, 1, 1, 1)

    def build():
        """The views each block works on, made anew whenever the plan moves its scratch (blocks_for)."""
        plan = []
        flat = source_buffer().reshape(len(g.phases), cin, g.n * g.image)
        products_all, sums = products_buffer(), sums_buffer()
        for c0 in range(0, cin, channels_per_block):
            cb = min(cin - c0, channels_per_block)
            products = products_all[:, :cb * multiplier * wide]
            multiplies, first = [], 0
            for phase, base, (rows, row_step), (columns, column_step), grid_taps in g.grids:
                last = first + len(grid_taps)
                source = as_strided(flat[phase, c0:, base:], (rows, columns, cb, 1, wide),
                                    (row_step * 4, column_step * 4, flat.strides[1], 0, 4), writeable=False)
                multiplies.append((source, scales[first:last, c0:c0 + cb].reshape(rows, columns, cb, multiplier, 1),
                                   products[first:last].reshape(rows, columns, cb, multiplier, wide)))
                first = last
            block = sums[:cb * multiplier]
            channels = slice(c0 * multiplier, (c0 + cb) * multiplier)
            pixels = as_strided(block, (cb * multiplier, g.n, g.ho, g.wo), pixel_strides, writeable=False)
            plan.append((multiplies, products, block.reshape(-1), pixels, channels,
                         None if shift is None else shift[channels]))
        return plan

    blocks = blocks_for(source_buffer, build)

    def step(inputs, out):
        buffer, plan = source_buffer(), blocks()
        for index in range(len(g.phases)):
            g.fill(buffer[index], index, inputs[0])
        for multiplies, products, block, pixels, channels, block_shift in plan:
            for source, scale, slots in multiplies:
                np.multiply(source, scale, out=slots)
            np.matmul(ones, products, out=block)
            region = out[channels]
            if block_shift is None:
                np.copyto(region, pixels)
            else:
                np.add(pixels, block_shift, out=region)
            for apply in epilogue:
                apply(region, channels)
        return out
    return step


def pixel_major(ctx, g: Geometry, weight, bias, epilogue):
    """Short images of many channels: channels-last phases (each input channel repeated k times), blocks of
    positions; each tap is a contiguous run of (positions, channels) times a tile of the per-channel scales
    repeated over a few positions (built once), the tile repeated over the block by broadcasting."""
    taps = len(g.order)
    cout, wide = g.cout, g.wide
    tile_rows = max(1, min(wide, -(-TILE_ELEMENTS // cout)))
    rows_per_block = max(1, min(wide, BLOCK_BYTES // (taps * cout * 4))) // tile_rows * tile_rows or tile_rows
    source_buffer = ctx.scratch.request((len(g.phases), g.n, g.hq, g.wq, g.cin, g.multiplier))
    products_buffer = ctx.scratch.request((taps, rows_per_block * cout))
    wide_buffer = ctx.scratch.request((g.n * g.image, cout))
    scale_rows = weight.reshape(cout, -1)[:, g.order].T                          # (tap in grid order, channel)
    tiles = np.ascontiguousarray(np.broadcast_to(scale_rows[:, None, :], (taps, tile_rows, cout)))
    tiles = tiles.reshape(taps, -1)
    ones = np.ones(taps, np.float32)

    def build():
        """The views each block works on, made anew whenever the plan moves its scratch (blocks_for)."""
        plan = []
        flat = source_buffer().reshape(len(g.phases), -1)
        products_all, result = products_buffer(), wide_buffer()
        for p0 in range(0, wide, rows_per_block):
            count = min(wide, p0 + rows_per_block) - p0
            products = products_all[:, :count * cout]
            multiplies, first = [], 0
            for phase, base, (rows, row_step), (columns, column_step), grid_taps in g.grids:
                last = first + len(grid_taps)
                # whole tiles, then the rows left over (a tile's prefix: its rows are all alike)
                for r0, reps, length in ((0, count // tile_rows, tile_rows * cout),
                                         (count // tile_rows * tile_rows, 1, count % tile_rows * cout)):
                    if reps == 0 or length == 0:
                        continue
                    start = (p0 + r0 + base) * cout
                    source = as_strided(flat[phase, start:], (rows, columns, reps, length),
                                        (row_step * cout * 4, column_step * cout * 4, length * 4, 4), writeable=False)
                    slots = as_strided(products[first:, r0 * cout:], (rows, columns, reps, length),
                                       (columns * products.strides[0], products.strides[0], length * 4, 4))
                    multiplies.append((source, tiles[first:last, None, :length].reshape(rows, columns, 1, length),
                                       slots))
                first = last
            block = result[p0:p0 + count]
            plan.append((multiplies, products, block.reshape(-1), block.T[:, None, None, :]))
        return plan

    blocks = blocks_for(source_buffer, build)

    def step(inputs, out):
        buffer, plan = source_buffer(), blocks()
        source = inputs[0][:, None]                                             # (cin, 1, n, h, w)
        for index in range(len(g.phases)):
            # the channels-last phase seen as (c, k, n, hq, wq), each channel c read k times
            g.fill(buffer[index].transpose(3, 4, 0, 1, 2), index, source)
        for multiplies, products, block, region in plan:
            for source, tile, slots in multiplies:
                np.multiply(source, tile, out=slots)
            np.matmul(ones, products, out=block)
            if bias is not None:
                region += bias[:, None, None, None]
            for apply in epilogue:
                apply(region, slice(None))
        np.copyto(out, wide_buffer().reshape(g.n, g.hq, g.wq, cout)[:, :g.ho, :g.wo].transpose(3, 0, 1, 2))
        return out
    return step
