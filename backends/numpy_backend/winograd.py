"""3×3 stride-1 convolutions by Winograd minimal filtering F(m×m, 3×3) (Lavin & Gray, 2015).

An m×m output tile is Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A for the (m+2)×(m+2) input tile d and the 3×3 filter g, so
summed over input channels a convolution becomes (m+2)² independent products (tiles, Cin) @ (Cin, Cout):
2.25× fewer multiplications than im2col for F(2×2, 3×3), 4× for F(4×4, 3×3). The filters are transformed
once, at compile time. Per batch chunk:
  1. the input is copied channels-last into a zero-bordered buffer, so that every tap of every tile is a run
     of Cin contiguous floats, and the tiles are gathered through one strided view (in cnhw the runs would be
     a few pixels long: that gather measured up to 6× slower on small images);
  2. the input transform, the (m+2)² products and the output transform are all GEMMs, the 2-D transforms
     as one product with kron(Bᵀ, Bᵀ) and kron(Aᵀ, Aᵀ): no Python loop over tiles or pixels;
  3. the output tiles are scattered into the cnhw output (the tiles that overhang its edge are cropped), and
     bias and the fused epilogue run on the chunk while it is in cache.
F(4×4) loses precision faster (its transforms have entries up to 8 and 1/24): about 1e-5 of the output's
scale in float32 against 7e-7 for F(2×2), still 10× inside cnngraph.tolerance.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

CHUNK_BYTES = 4 << 20       # per buffer: a batch chunk's tiles stay in cache between the GEMMs (8 MB: no faster)
MIN_CHANNELS = 32           # see tile_size
F4_MIN_TILES = 32
MAX_PRODUCTS_PER_PIXEL = 7.2   # im2col's 9, less a margin for the transforms
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
    either more tiles than output channels or ~2M multiply-adds per product; otherwise (7×7 at batch 1,
    28×28 with 64–256 channels at batch 1) F(2×2) was faster.
    """
    if (tuple(attrs["kernel_size"]) != (3, 3) or tuple(attrs["stride"]) != (1, 1)
            or tuple(attrs["dilation"]) != (1, 1) or attrs["groups"] != 1):
        return None
    if FORCE_TILE is not None or min(cin, cout) < MIN_CHANNELS:
        return FORCE_TILE
    tiles4 = batch * -(-out_hw[0] // 4) * -(-out_hw[1] // 4)
    large = tiles4 >= cout or cin * cout * tiles4 >= 1 << 21
    m = 4 if tiles4 >= F4_MIN_TILES and large else 2
    if m == 4 and products_per_pixel(4, out_hw) >= products_per_pixel(2, out_hw):
        m = 2
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
    b_t, _, a_t = (np.array(t, np.float64) for t in TRANSFORMS[m])
    input_transform = np.kron(b_t, b_t).astype(np.float32)      # (a², a²): Bᵀ d B on flattened tiles
    output_transform = np.kron(a_t, a_t).astype(np.float32)     # (m², a²): Aᵀ M A on flattened tiles
    widest = max(cin, cout)
    chunk = max(1, min(n, CHUNK_BYTES // (a * a * th * tw * widest * 4)))
    chunk = -(-n // -(-n // chunk))                  # as many chunks, of even sizes
    # OpenBLAS ran the products up to 2× faster with the longer side as the result's rows
    tiles_first = chunk * th * tw >= cout
    u = filter_transform(weight, m)                                 # (a², Cout, Cin)
    if tiles_first:
        u = np.ascontiguousarray(u.transpose(0, 2, 1))              # (a², Cin, Cout)
    padded = ctx.scratch.request((chunk, hp, wp, cin))
    # two buffers used twice each: gathered tiles then products; transformed tiles then output tiles
    first = ctx.scratch.request((a * a * chunk * th * tw * widest,))
    second = ctx.scratch.request((a * a * chunk * th * tw * widest,))

    def place(source, xp):
        """Copy a (Cin, nb, H, W) chunk channels-last into the padded buffer, zeroing only its border."""
        xp[:, :top] = 0.0
        xp[:, top + h:] = 0.0
        xp[:, top:top + h, :left] = 0.0
        xp[:, top:top + h, left + w:] = 0.0
        np.copyto(xp[:, top:top + h, left:left + w], source.transpose(1, 2, 3, 0))

    def step(inputs, out):
        for n0 in range(0, n, chunk):
            nb = min(chunk, n - n0)
            tiles = nb * th * tw
            xp = padded()[:nb]
            place(inputs[0][:, n0:n0 + nb], xp)
            s_n, s_h, s_w, s_c = xp.strides
            taps = as_strided(xp, (a, a, nb, th, tw, cin), (s_h, s_w, s_n, m * s_h, m * s_w, s_c), writeable=False)
            gathered = first()[:a * a * tiles * cin].reshape(a, a, nb, th, tw, cin)
            np.copyto(gathered, taps)
            v = second()[:a * a * tiles * cin].reshape(a * a, tiles, cin)
            np.matmul(input_transform, gathered.reshape(a * a, tiles * cin), out=v.reshape(a * a, tiles * cin))
            y_flat = second()[:m * m * tiles * cout]
            if tiles_first:                        # products (a², tiles, Cout): the tall side as BLAS's rows
                products = first()[:a * a * tiles * cout].reshape(a * a, tiles, cout)
                np.matmul(v, u, out=products)
                y = y_flat.reshape(m, m, nb, th, tw, cout).transpose(0, 1, 5, 2, 3, 4)
            else:                                  # products (a², Cout, tiles)
                products = first()[:a * a * cout * tiles].reshape(a * a, cout, tiles)
                np.matmul(u, v.transpose(0, 2, 1), out=products)
                y = y_flat.reshape(m, m, cout, nb, th, tw)
            np.matmul(output_transform, products.reshape(a * a, -1), out=y_flat.reshape(m * m, -1))
            region = out[:, n0:n0 + nb]
            for i in range(m):
                for j in range(m):
                    rows, cols = len(range(i, ho, m)), len(range(j, wo, m))
                    np.copyto(region[:, :, i::m, j::m], y[i, j, :, :, :rows, :cols])
            finish(region, slice(None))
        return out
    return step
