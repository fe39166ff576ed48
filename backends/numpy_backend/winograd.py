"""3×3 stride-1 convolutions by Winograd minimal filtering F(m×m, 3×3) (Lavin & Gray, 2015).

An m×m output tile is Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A for the (m+2)×(m+2) input tile d and the 3×3 filter g, so
summed over input channels a convolution becomes (m+2)² independent products (tiles, Cin) @ (Cin, Cout):
2.25× fewer multiplications than im2col for F(2×2, 3×3), 4× for F(4×4, 3×3). The filters are transformed
once, at compile time. Per batch chunk:
  1. the input is copied channels-last into a zero-bordered buffer, so that every tap of every tile is a run
     of Cin contiguous floats, and the tiles are gathered through one strided view (in cnhw the runs would be
     a few pixels long: that gather measured up to 6× slower on small images);
  2. the input transform, the (m+2)² products and the output transform are all GEMMs, each 2-D transform
     as two passes of small products (separable), no Python loop over tiles or pixels;
  3. the output tiles are scattered into the cnhw output (the tiles that overhang its edge are cropped), and
     bias and the fused epilogue run on the chunk while it is in cache.
F(4×4) loses precision faster (its transforms have entries up to 8 and 1/24): about 1e-5 of the output's
scale in float32 against 7e-7 for F(2×2) (measured against a float64 convolution on 64 and 256 channels:
6e-6 and 1.4e-5 with the separable transforms, 6e-6 and 1e-5 with the kron GEMMs), still 7× inside
cnngraph.tolerance.
"""
from __future__ import annotations

from functools import partial

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import batch_split

CHUNK_BYTES = 4 << 20       # per buffer: a batch chunk's tiles stay in cache between the GEMMs (8 MB: no faster)
CHUNK_TILES = 256           # and at most this many tiles a chunk (see winograd_conv)
MIN_CHANNELS = 32           # see tile_size
F4_MIN_TILES = 32
MAX_PRODUCTS_PER_PIXEL = 7.2   # im2col's 9, less a margin for the transforms
MIN_TILES = 20              # fewer tiles in the batch: im2col (see tile_size; measured at 16 only)
FORCE_TILE = None           # tests: use this tile on every eligible convolution, whatever its channels and size

# Bᵀ, G, Aᵀ for the interpolation points (0, ±1, ∞) and (0, ±1, ±2, ∞), keyed by the output tile size m.
TRANSFORMS = {
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
         [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
         [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}


def tile_size(attrs, cin: int, cout: int, batch: int, out_hw) -> int | None:
    """The Winograd output tile m for this convolution, or None to keep im2col.

    Measured against im2col on 32–512 channels at 7×7–56×56, batch 1 and 8 (2 cores, AVX-512, OpenBLAS):
    Winograd was faster on every such shape, 0.5–0.9× its time; below 32 channels it is unmeasured and the
    transforms, whose cost does not shrink with the channels, would dominate. F(4×4) saves 1.8× more
    multiplications than F(2×2) but splits them into 36 products instead of 16, each with 4× fewer tiles
    as columns: it won where each product stays large, i.e. the batch has at least 32 tiles of 4×4 and
    either more tiles than output channels or ~0.5M multiply-adds per product (2M while the transforms were
    one kron GEMM each; with separable transforms 128 channels at 28×28, batch 1, ran F(4×4) in 0.85× F(2×2)'s
    time single-threaded, 0.92× on 2 cores); otherwise (14×14 and 7×7 at batch 1) F(2×2) was faster (256
    channels at 14×14, batch 1: F(4×4) took 1.02–1.11× its time). With fewer than MIN_TILES tiles in the batch
    (resnet18's 7×7 maps at batch 1: 16) each transformed filter serves few tiles and reading them (16/9 of
    the weight's size for F(2×2)) bounds the products: single-threaded, its products alone took 2.5–3.5 ms
    where im2col's one GEMM took 2.6 (onnxruntime's whole convolution 2.1).
    """
    if (tuple(attrs["kernel_size"]) != (3, 3) or tuple(attrs["stride"]) != (1, 1)
            or tuple(attrs["dilation"]) != (1, 1) or attrs["groups"] != 1):
        return None
    if FORCE_TILE is not None or min(cin, cout) < MIN_CHANNELS:
        return FORCE_TILE
    tiles4 = batch * -(-out_hw[0] // 4) * -(-out_hw[1] // 4)
    large = tiles4 >= cout or cin * cout * tiles4 >= 1 << 19
    m = 4 if tiles4 >= F4_MIN_TILES and large else 2
    if m == 4 and products_per_pixel(4, out_hw) >= products_per_pixel(2, out_hw):
        m = 2
    if batch * -(-out_hw[0] // m) * -(-out_hw[1] // m) < MIN_TILES:
        return None
    return m if products_per_pixel(m, out_hw) < MAX_PRODUCTS_PER_PIXEL else None


def products_per_pixel(m: int, out_hw) -> float:
    """Multiplications per output pixel and input channel of F(m×m, 3×3), counting the tiles' overhang: on
    maps smaller than a tile most of a tile's products are thrown away (a 1×1 map: 36 for F(4×4), 16 for
    F(2×2), against im2col's 9). resnet18 at 32×32 has 2×2 and 1×1 maps in layer3 and layer4."""
    tiles = -(-out_hw[0] // m) * -(-out_hw[1] // m)
    return (m + 2) ** 2 * tiles / (out_hw[0] * out_hw[1])


def filter_transform(weight: np.ndarray, m: int) -> np.ndarray:
    """U[(α, β), o, c] = (G g[o, c] Gᵀ)[α, β], computed in float64 then rounded once."""
    g = np.array(TRANSFORMS[m][1], np.float64)
    taps = weight.reshape(-1, 9).astype(np.float64).T                  # (i·3 + j, o·Cin + c)
    u = np.kron(g, g) @ taps                                           # one GEMM, not einsum's loops: 25× faster
    return np.ascontiguousarray(u.reshape((m + 2) ** 2, *weight.shape[:2]), dtype=np.float32)


def winograd_conv(ctx, weight: np.ndarray, m: int, finish):
    """Step function of a 3×3 stride-1 convolution in the cnhw layout; ``finish(region, channels)`` adds the
    bias and runs the epilogue on a block of the output."""
    cin, n, h, w = ctx.physical(ctx.in_shapes[0])
    cout, _, ho, wo = ctx.physical(ctx.out_shape)
    top, left = ctx.attrs["pads"][:2]
    a = m + 2
    th, tw = -(-ho // m), -(-wo // m)               # tiles per image, the last row/column may overhang
    hp, wp = th * m + 2, tw * m + 2
    b_t, _, a_t = (np.array(t, np.float32) for t in TRANSFORMS[m])     # Bᵀ (a, a), Aᵀ (m, a)
    widest = max(cin, cout)
    # OpenBLAS ran the products (tiles, Cin) @ (Cin, Cout) fastest with about 200 tiles: single-threaded, 36 of
    # (196, 64) @ (64, 64) took 0.39 ms, of (392, 64) @ (64, 64) 1.2 ms (resnet18's layer1 at batch 4: chunks of
    # one image instead of two, 0.92× the convolution's time); (98, 128) @ (128, 128) was slower than (196, ...)
    chunk = max(1, min(n, CHUNK_BYTES // (a * a * th * tw * widest * 4), CHUNK_TILES // (th * tw)))
    chunk = -(-n // -(-n // chunk))                  # as many chunks, of even sizes
    # the products (tiles, Cin) @ (Cin, Cout), tiles as the result's rows, ran 0.86–0.96× the time of
    # (Cout, Cin) @ (Cin, tiles) single-threaded even with fewer tiles than channels (256–512 channels, 7×7–28×28)
    u = np.ascontiguousarray(filter_transform(weight, m).transpose(0, 2, 1))      # (a², Cin, Cout)
    few_tiles = chunk * th * tw < cout
    padded = ctx.scratch.request((chunk, hp, wp, cin))
    # two buffers, each used in turn: gathered then transformed tiles, then the output's half-transformed
    # tiles; the input's half-transformed tiles, then the products, then the output tiles
    first = ctx.scratch.request((a * a * chunk * th * tw * widest,))
    second = ctx.scratch.request((a * a * chunk * th * tw * widest,))
    # inside batch_split.inference_threads, one part per core: rows of tiles when there are many tiles (each part
    # with buffers of its own), else output channels over the tiles transformed once (and their own output tiles:
    # split by rows, each core would read all the transformed filters; on 2 cores 1.07–1.19× slower at 7×7–14×14)
    macs = cout * cin * 9 * n * ho * wo
    workers = batch_split.WORKERS if macs >= 2 * batch_split.MIN_PIECE_MACS and th > 1 else 1
    buffers = [(first, second)]
    if few_tiles:
        third = ctx.scratch.request((a * m * chunk * th * tw * cout,))
    else:
        part_tiles = a * a * chunk * -(-th // max(1, workers)) * tw * widest
        buffers += [(ctx.scratch.request((part_tiles,)), ctx.scratch.request((part_tiles,))) for _ in range(workers - 1)]

    def place(source, xp, y0, y1):
        """Copy rows [y0, y1) of the padded (nb, Hp, Wp, Cin) buffer from a (Cin, nb, H, W) chunk, channels-last,
        zeroing only the border."""
        s0, s1 = max(y0, top), min(y1, top + h)         # the rows that hold input rows
        if s1 <= s0:
            xp[:, y0:y1] = 0.0
            return
        xp[:, y0:s0] = 0.0
        xp[:, s1:y1] = 0.0
        xp[:, s0:s1, :left] = 0.0
        xp[:, s0:s1, left + w:] = 0.0
        np.copyto(xp[:, s0:s1, left:left + w], source[:, :, s0 - top:s1 - top].transpose(1, 2, 3, 0))

    def transformed(xp, nb, t0, t1, v_buffer, spare_buffer):
        """Bᵀ d B of the tiles of tile rows [t0, t1): (a², tiles, Cin) in ``v_buffer``."""
        tiles = nb * (t1 - t0) * tw
        s_n, s_h, s_w, s_c = xp.strides
        # gathered transposed, the tap's column outermost (see separable)
        taps = as_strided(xp[:, t0 * m:], (a, a, nb, t1 - t0, tw, cin), (s_w, s_h, s_n, m * s_h, m * s_w, s_c),
                          writeable=False)
        gathered = v_buffer()[:a * a * tiles * cin].reshape(a, a, nb, t1 - t0, tw, cin)
        np.copyto(gathered, taps)
        return separable(b_t, gathered.reshape(a, a, -1), spare_buffer(), v_buffer()).reshape(a * a, tiles, cin)

    def scatter(y, region, t0, t1, c0, c1):
        """Output tiles y (m, m, channels [c0, c1), nb, tile rows [t0, t1), tw) into the cnhw output, cropping
        the overhang, then bias and epilogue."""
        stop = min(ho, t1 * m)
        for i in range(m):
            for j in range(m):
                rows, cols = len(range(t0 * m + i, stop, m)), len(range(j, wo, m))
                np.copyto(region[c0:c1, :, t0 * m + i:stop:m, j::m], y[i, j, :, :, :rows, :cols])
        finish(region[c0:c1, :, t0 * m:stop], slice(c0, c1))

    def rows_part(source, region, nb, t0, t1, part_buffers):
        """Everything for tile rows [t0, t1): products (a², tiles, Cout), the tall side as BLAS's rows."""
        xp = padded()[:nb]
        place(source, xp, t0 * m, min(hp, t1 * m + 2))
        v_buffer, products_buffer = part_buffers
        v = transformed(xp, nb, t0, t1, v_buffer, products_buffer)
        tiles = nb * (t1 - t0) * tw
        products = products_buffer()[:a * a * tiles * cout].reshape(a * a, tiles, cout)
        np.matmul(v, u, out=products)
        # v is used up: its buffer takes the half-transformed tiles, then products' buffer the output tiles
        y = separable(a_t, products.reshape(a, a, -1), v_buffer(), products_buffer())     # (j, i, tiles·Cout)
        scatter(y.reshape(m, m, nb, t1 - t0, tw, cout).transpose(1, 0, 5, 2, 3, 4), region, t0, t1, 0, cout)

    def channels_part(v, region, nb, c0, c1):
        """Output channels [c0, c1) from the tiles transformed once (v, shared): products (a², tiles, c1 − c0),
        then the output tiles, in segments of the buffers of their own."""
        tiles = nb * th * tw
        products = second()[a * a * tiles * c0:a * a * tiles * c1].reshape(a * a, tiles, c1 - c0)
        np.matmul(v, u[:, :, c0:c1], out=products)
        y = separable(a_t, products.reshape(a, a, -1), third()[a * m * tiles * c0:a * m * tiles * c1],
                      products.reshape(-1))                                                  # (j, i, ·)
        scatter(y.reshape(m, m, nb, th, tw, c1 - c0).transpose(1, 0, 5, 2, 3, 4), region, 0, th, c0, c1)

    def step(inputs, out):
        for n0 in range(0, n, chunk):
            nb = min(chunk, n - n0)
            source, region = inputs[0][:, n0:n0 + nb], out[:, n0:n0 + nb]
            parts = batch_split.kernel_parts(cout if few_tiles else th, macs) if workers > 1 else [(0, th)]
            if few_tiles and len(parts) > 1:
                xp = padded()[:nb]
                place(source, xp, 0, hp)
                v = transformed(xp, nb, 0, th, first, second)       # the parts' products go to second
                batch_split.in_parallel([partial(channels_part, v, region, nb, c0, c1) for c0, c1 in parts])
            else:
                parts = [(0, th)] if few_tiles else parts
                batch_split.in_parallel([partial(rows_part, source, region, nb, t0, t1, buffers[i])
                                         for i, (t0, t1) in enumerate(parts)])
        return out
    return step


def separable(t: np.ndarray, x: np.ndarray, half: np.ndarray, out: np.ndarray) -> np.ndarray:
    """(t xᵀ tᵀ)[r, s] = Σ t[s, p]·t[r, q]·x[p, q] for every column of x (a, a, columns): one tile and channel a
    column. Two passes of a small product per row of taps, 2·a·a² multiply-adds a column where (t ⊗ t) as one
    (a², a²) GEMM costs (a²)², and OpenBLAS ran them in 0.7–0.8× its time (Bᵀ: twice 6×6 against 36×36,
    on 64–256 channels). The input tiles are gathered transposed (d[j, i]), giving Bᵀ d B; the output tiles
    come out transposed, Aᵀ M A indexed (j, i). ``half`` and ``out`` are flat buffers or (·, ·, columns)
    views to write into; returns the (k, k, columns) result in ``out``."""
    k, columns = t.shape[0], x.shape[-1]
    if half.ndim == 1:
        half = half[:x.shape[0] * k * columns].reshape(x.shape[0], k, columns)
    if out.ndim == 1:
        out = out[:k * k * columns].reshape(k, k, columns)
    np.matmul(t, x, out=half)                           # per p: t over q → (p, r, ·)
    np.matmul(t, half.transpose(1, 0, 2), out=out)      # per r: t over p → (r, s, ·)
    return out
