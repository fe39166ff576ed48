"""A naive reference interpreter for cnngraph graphs: the oracle the NumPy backend is tested against.

Written from PyTorch's documented semantics, in float64, with explicit Python loops over output positions
(and kernel offsets where that is clearer), so that it shares no code and no tricks with the backend:
no im2col, no GEMM, no shared output-size helper. Keep inputs small: it is slow on purpose.

PyTorch semantics followed here (one axis; pads are (begin, end) and equal in PyTorch's own layers):
  Conv2d      out = floor((in + pb + pe - d·(k-1) - 1) / s) + 1, zero padding,
              out[n, o, i, j] = bias[o] + Σ_{c∈group(o), a, b} w[o, c, a, b] · xpad[n, c, i·s + a·d, j·s + b·d]
  MaxPool2d   out = floor_or_ceil((in + pb + pe - d·(k-1) - 1) / s) + 1, and with ceil_mode a last window
              starting at or beyond in + pb (inside the right padding) is dropped; padding counts as -inf
  AvgPool2d   same windows (d = 1); divisor with count_include_pad: the window clipped to the *padded* input
              [-pb, in + pe); without: the window clipped to the real input [0, in)
"""
from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["reference_run", "REFERENCE_OPS", "conv2d", "max_pool2d", "avg_pool2d", "conv_out_size",
           "pool_out_size", "conv_nd", "conv_transpose_nd"]


# --- output sizes, PyTorch's formulas ------------------------------------------------------------------------
def conv_out_size(size, kernel, stride, pad_begin, pad_end, dilation):
    return math.floor((size + pad_begin + pad_end - dilation * (kernel - 1) - 1) / stride) + 1


def pool_out_size(size, kernel, stride, pad_begin, pad_end, dilation, ceil_mode):
    span = (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) / stride
    out = (math.ceil(span) if ceil_mode else math.floor(span)) + 1
    # PyTorch: "ensure that the last pooling starts inside the image" (pooling_output_shape_pad_lr)
    if ceil_mode and (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


# --- kernels (float64 in, float64 out) -----------------------------------------------------------------------
def conv2d(x, weight, bias, stride, pads, dilation, groups):
    n, cin, h, w = x.shape
    cout, cin_g, kh, kw = weight.shape
    assert cin == cin_g * groups, (cin, cin_g, groups)
    top, left, bottom, right = pads
    sh, sw = stride
    dh, dw = dilation
    ho = conv_out_size(h, kh, sh, top, bottom, dh)
    wo = conv_out_size(w, kw, sw, left, right, dw)
    xpad = np.zeros((n, cin, h + top + bottom, w + left + right))
    xpad[:, :, top:top + h, left:left + w] = x
    cout_g = cout // groups
    out = np.zeros((n, cout, ho, wo))
    for o in range(cout):
        g = o // cout_g
        channels = xpad[:, g * cin_g:(g + 1) * cin_g]
        for i in range(ho):
            for j in range(wo):
                acc = np.zeros(n)
                for a in range(kh):
                    for b in range(kw):
                        # (n, cin_g) · (cin_g,) for this kernel offset
                        acc += channels[:, :, i * sh + a * dh, j * sw + b * dw] @ weight[o, :, a, b]
                out[:, o, i, j] = acc + (bias[o] if bias is not None else 0.0)
    return out


def conv_nd(x, weight, bias, stride, pads, dilation, groups):
    """Any number of spatial axes; pads are the begins, then the ends."""
    n, cin, *size = x.shape
    cout, cin_g, *kernel = weight.shape
    dims = len(size)
    assert cin == cin_g * groups, (cin, cin_g, groups)
    out_size = [conv_out_size(size[i], kernel[i], stride[i], pads[i], pads[dims + i], dilation[i])
                for i in range(dims)]
    xpad = np.zeros((n, cin, *(size[i] + pads[i] + pads[dims + i] for i in range(dims))))
    xpad[(slice(None), slice(None)) + tuple(slice(pads[i], pads[i] + size[i]) for i in range(dims))] = x
    cout_g = cout // groups
    out = np.zeros((n, cout, *out_size))
    for o in range(cout):
        g = o // cout_g
        for position in itertools.product(*(range(s) for s in out_size)):
            acc = np.zeros(n)
            for tap in itertools.product(*(range(k) for k in kernel)):
                where = tuple(position[i] * stride[i] + tap[i] * dilation[i] for i in range(dims))
                acc += xpad[(slice(None), slice(g * cin_g, (g + 1) * cin_g)) + where] @ weight[(o, slice(None)) + tap]
            out[(slice(None), o) + position] = acc + (bias[o] if bias is not None else 0.0)
    return out


def conv_transpose_nd(x, weight, bias, stride, pads, output_padding, dilation, groups):
    """The definition: input pixel p, through tap t, adds to full-output position p·stride + t·dilation;
    the output is the full scatter from pad_begin on (positions past its end, from output_padding, get the
    bias alone)."""
    n, cin, *size = x.shape
    _, cout_g, *kernel = weight.shape
    dims = len(size)
    cin_g = cin // groups
    out_size = [(size[i] - 1) * stride[i] - pads[i] - pads[dims + i] + dilation[i] * (kernel[i] - 1)
                + output_padding[i] + 1 for i in range(dims)]
    out = np.zeros((n, cout_g * groups, *out_size))
    for c in range(cin):
        g = c // cin_g
        for position in itertools.product(*(range(s) for s in size)):
            for tap in itertools.product(*(range(k) for k in kernel)):
                target = tuple(position[i] * stride[i] + tap[i] * dilation[i] - pads[i] for i in range(dims))
                if all(0 <= target[i] < out_size[i] for i in range(dims)):
                    for j in range(cout_g):
                        out[(slice(None), g * cout_g + j) + target] += \
                            x[(slice(None), c) + position] * weight[(c, j) + tap]
    if bias is not None:
        out += bias.reshape((1, -1) + (1,) * dims)
    return out


def _pool_windows(size, kernel, stride, pad_begin, pad_end, dilation, ceil_mode):
    """For each output position: (positions of the window that fall in the real input, start, end)."""
    count = pool_out_size(size, kernel, stride, pad_begin, pad_end, dilation, ceil_mode)
    windows = []
    for i in range(count):
        start = i * stride - pad_begin
        positions = [start + a * dilation for a in range(kernel)]
        windows.append(([p for p in positions if 0 <= p < size], start))
    return windows


def max_pool2d(x, kernel, stride, pads, dilation, ceil_mode):
    n, c, h, w = x.shape
    top, left, bottom, right = pads
    rows = _pool_windows(h, kernel[0], stride[0], top, bottom, dilation[0], ceil_mode)
    cols = _pool_windows(w, kernel[1], stride[1], left, right, dilation[1], ceil_mode)
    out = np.full((n, c, len(rows), len(cols)), -np.inf)
    for i, (rr, _) in enumerate(rows):
        for j, (cc, _) in enumerate(cols):
            for r in rr:
                for q in cc:
                    out[:, :, i, j] = np.maximum(out[:, :, i, j], x[:, :, r, q])
    return out


def avg_pool2d(x, kernel, stride, pads, ceil_mode, count_include_pad):
    n, c, h, w = x.shape
    top, left, bottom, right = pads
    rows = _pool_windows(h, kernel[0], stride[0], top, bottom, 1, ceil_mode)
    cols = _pool_windows(w, kernel[1], stride[1], left, right, 1, ceil_mode)
    out = np.zeros((n, c, len(rows), len(cols)))
    for i, (rr, r0) in enumerate(rows):
        for j, (cc, c0) in enumerate(cols):
            total = np.zeros((n, c))
            for r in rr:
                for q in cc:
                    total += x[:, :, r, q]
            if count_include_pad:
                # PyTorch: hend = min(hstart + kH, inH + pad); pool_size = (hend - hstart)·(wend - wstart)
                height = min(r0 + kernel[0], h + bottom) - r0
                width = min(c0 + kernel[1], w + right) - c0
            else:
                height, width = len(rr), len(cc)
            out[:, :, i, j] = total / (height * width)
    return out


def linear(x, weight, bias):
    out = np.zeros((*x.shape[:-1], weight.shape[0]))
    for o in range(weight.shape[0]):
        out[..., o] = np.sum(x * weight[o], axis=-1) + (bias[o] if bias is not None else 0.0)
    return out


def batch_norm(x, weight, bias, mean, var, eps):
    out = np.empty_like(x)
    for ch in range(x.shape[1]):
        out[:, ch] = (x[:, ch] - mean[ch]) / math.sqrt(var[ch] + eps) * weight[ch] + bias[ch]
    return out


def softmax(x, axis):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def flatten(x, start, end):
    if x.ndim == 0:
        return x.reshape(1)
    start, end = start % x.ndim, end % x.ndim
    middle = int(np.prod(x.shape[start:end + 1]))
    return x.reshape(*x.shape[:start], middle, *x.shape[end + 1:])


def pad(x, pads, mode, value):
    """ONNX Pad, index by index: each output index maps to an input index (or to the fill value)."""
    rank = x.ndim
    begin, end = pads[:rank], pads[rank:]
    shape = [x.shape[a] + begin[a] + end[a] for a in range(rank)]
    out = np.empty(shape)
    for index in np.ndindex(*shape):
        source = []
        for axis, i in enumerate(index):
            j, size = i - begin[axis], x.shape[axis]
            if not 0 <= j < size:
                if mode == "constant":
                    source = None
                    break
                j = (min(max(j, 0), size - 1) if mode == "edge" else
                     (-j if j < 0 else 2 * (size - 1) - j))                       # reflect, edge not repeated
            source.append(j)
        out[index] = value if source is None else x[tuple(source)]
    return out


def local_response_norm(x, size, alpha, beta, k):
    """PyTorch: channel c sums x² over [c - size//2, c + (size-1)//2] (clipped), divided by size."""
    out = np.empty_like(x)
    channels = x.shape[1]
    for c in range(channels):
        window = x[:, max(0, c - size // 2):min(channels, c + (size - 1) // 2 + 1)]
        out[:, c] = x[:, c] / (k + alpha / size * np.sum(window ** 2, axis=1)) ** beta
    return out


def matmul(a, b):
    """NumPy's matmul rules (1-D operands promoted, batch dims broadcast), summed with einsum."""
    a2, b2 = (a[None] if a.ndim == 1 else a), (b[:, None] if b.ndim == 1 else b)
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    a2 = np.broadcast_to(a2, (*batch, *a2.shape[-2:]))
    b2 = np.broadcast_to(b2, (*batch, *b2.shape[-2:]))
    out = np.einsum("...ij,...jk->...ik", a2, b2)
    if a.ndim == 1:
        out = out[..., 0, :]
    if b.ndim == 1:
        out = out[..., 0]
    return out


def reshape(x, target, bindings):
    shape = []
    for i, d in enumerate(target):
        if d == 0:
            d = x.shape[i]
        elif isinstance(d, str):
            d = int(np.prod([int(f) if f.isdigit() else bindings[f] for f in d.split("*")]))
        shape.append(d)
    return x.reshape(shape)


class _Bound:
    """What an op's reference reads of a node: its fields, plus the run's bindings of symbolic dims (Reshape)."""
    def __init__(self, node, bindings):
        self.node, self.bindings = node, bindings

    def __getattr__(self, name):
        return getattr(self.node, name)


class _Fused:
    """What an activation's reference reads of a node: its attributes."""
    def __init__(self, attrs):
        self.attrs = attrs


def _param(node, name):
    value = node.params.get(name)
    return None if value is None else np.asarray(value, dtype=np.float64)


def _conv(node, x):
    a = node.attrs
    return conv2d(x, _param(node, "weight"), _param(node, "bias"), a["stride"], a["pads"], a["dilation"],
                  a["groups"])


def _conv_transpose(node, x):
    a = node.attrs
    return conv_transpose_nd(x, _param(node, "weight"), _param(node, "bias"), a["stride"], a["pads"],
                             a["output_padding"], a["dilation"], a["groups"])


def _max_pool(node, x):
    a = node.attrs
    return max_pool2d(x, a["kernel_size"], a["stride"], a["pads"], a.get("dilation", (1, 1)), a["ceil_mode"])


def _avg_pool(node, x):
    a = node.attrs
    assert tuple(a.get("dilation", (1, 1))) == (1, 1), "AvgPool2d has no dilation in PyTorch"
    return avg_pool2d(x, a["kernel_size"], a["stride"], a["pads"], a["ceil_mode"], a["count_include_pad"])


# --- slicing and resampling (cnngraph/layers/slicing.py, resample.py) ----------------------------------------
def onnx_slice(x, starts, ends, axes, steps):
    """ONNX Slice, written out: normalise and clamp each start/end by the spec, then copy index by index."""
    taken = [list(range(size)) for size in x.shape]
    for start, end, axis, step in zip(starts, ends, axes, steps):
        size = x.shape[axis]
        start, end = start + size if start < 0 else start, end + size if end < 0 else end
        if step > 0:
            start, end = min(max(start, 0), size), min(max(end, 0), size)
        else:
            start, end = min(max(start, 0), size - 1), min(max(end, -1), size - 1)
        picked, i = [], start
        while (i < end) if step > 0 else (i > end):
            picked.append(i)
            i += step
        taken[axis % x.ndim] = picked
    out = np.empty([len(t) for t in taken])
    for index in np.ndindex(*out.shape):
        out[index] = x[tuple(t[i] for t, i in zip(taken, index))]
    return out


def index_select(x, dim, index):
    dim %= x.ndim
    picks = index if isinstance(index, tuple) else (index,)
    parts = [np.expand_dims(x[(slice(None),) * dim + (i % x.shape[dim],)], dim) for i in picks]
    out = np.concatenate(parts, axis=dim)
    return out if isinstance(index, tuple) else out.squeeze(dim)


def expand(x, shape):
    rank = max(x.ndim, len(shape))
    dims = (1,) * (rank - x.ndim) + x.shape
    target = (1,) * (rank - len(shape)) + tuple(1 if isinstance(d, str) else d for d in shape)
    out_shape = [max(a, b) for a, b in zip(dims, target)]
    out = np.empty(out_shape)
    source = x.reshape(dims)
    for index in np.ndindex(*out_shape):
        out[index] = source[tuple(0 if d == 1 else i for i, d in zip(index, dims))]
    return out


def tile(x, dims):
    repeats = (1,) * (x.ndim - len(dims)) + tuple(dims)
    out = np.empty([d * r for d, r in zip(x.shape, repeats)])
    for index in np.ndindex(*out.shape):
        out[index] = x[tuple(i % d for i, d in zip(index, x.shape))]
    return out


def _resize_coordinate(x, transform, length_in, length_out, scale):
    """ONNX Resize's coordinate_transformation_mode for one output index, in float32 as runtimes compute it."""
    f, x, s = np.float32, np.float32(x), np.float32(scale)
    if length_in == length_out and s == 1:
        return x                         # runtimes leave an axis of scale 1 alone, whatever the mode
    if transform == "asymmetric":
        return x / s
    if transform == "tf_half_pixel_for_nn":
        return (x + f(0.5)) / s
    if transform == "align_corners":
        return f(0) if length_out == 1 else x * f(length_in - 1) / f(length_out - 1)
    if transform == "pytorch_half_pixel" and length_out == 1:
        return f(0)
    shift = f(0)
    if transform == "half_pixel_symmetric":
        shift = f(length_in) / f(2) * (f(1) - f(length_out) / (s * f(length_in)))
    return shift + (x + f(0.5)) / s - f(0.5)


def _round(c, mode):
    if mode == "floor":
        return math.floor(c)
    if mode == "ceil":
        return math.ceil(c)
    if c - math.floor(c) == 0.5:
        return math.floor(c) if mode == "round_prefer_floor" else math.ceil(c)
    return int(round(float(c)))


def _linear_taps(c, n):
    """(index, weight) of the two cells around coordinate c, clamped to [0, n - 1]."""
    c = min(max(c, 0.0), n - 1.0)
    low = int(math.floor(c))
    return [(low, 1.0 - (c - low)), (min(low + 1, n - 1), c - low)]


def _cubic_taps(c, n, a=-0.75):
    """(index, weight) of the four cells around c by Keys' kernel; a cell past the edge reads the edge."""
    def keys(d):
        d = abs(d)
        if d <= 1:
            return (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1
        return a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a if d < 2 else 0.0
    low = int(math.floor(c))
    return [(min(max(i, 0), n - 1), keys(c - i)) for i in range(low - 1, low + 3)]


def upsample(x, attrs):
    spatial = x.shape[2:]
    wanted = attrs["size"] or attrs["scale_factor"]
    wanted = tuple(wanted) * len(spatial) if len(wanted) == 1 else tuple(wanted)
    if attrs["size"]:
        sizes = list(wanted)
        scales = [np.float32(o) / np.float32(i) for o, i in zip(sizes, spatial)]
    else:
        scales = [np.float32(s) for s in wanted]
        sizes = [int(math.floor(i * float(s))) for i, s in zip(spatial, scales)]
    out = np.empty((*x.shape[:2], *sizes))
    for position in np.ndindex(*sizes):
        coords = [_resize_coordinate(p, attrs["coordinate_transformation_mode"], n, o, s)
                  for p, n, o, s in zip(position, spatial, sizes, scales)]
        if attrs["mode"] == "nearest":
            source = tuple(min(max(_round(c, attrs["nearest_mode"]), 0), n - 1) for c, n in zip(coords, spatial))
            out[(Ellipsis, *position)] = x[(Ellipsis, *source)]
            continue
        if attrs["mode"] == "bicubic":
            taps = [_cubic_taps(float(c), n) for c, n in zip(coords, spatial)]
        else:
            taps = [_linear_taps(float(c), n) for c, n in zip(coords, spatial)]
        total = 0.0
        for choice in np.ndindex(*(len(t) for t in taps)):
            weight, source = 1.0, []
            for axis_taps, k in zip(taps, choice):
                weight *= axis_taps[k][1]
                source.append(axis_taps[k][0])
            total = total + weight * x[(Ellipsis, *source)]
        out[(Ellipsis, *position)] = total
    return out


def reduce_naive(x, axes, keepdims, how):
    """A reduction by a loop over every element: each adds to (or bounds) the output cell its kept indices
    name. Empty axes means all axes (ONNX's default)."""
    axes = {a % x.ndim for a in axes} if axes else set(range(x.ndim))
    cells: dict[tuple, list] = {}
    for index in np.ndindex(*x.shape):
        cells.setdefault(tuple(0 if i in axes else v for i, v in enumerate(index)), []).append(x[index])
    out = np.zeros([1 if i in axes else d for i, d in enumerate(x.shape)])
    for key, values in cells.items():
        if how == "sum":
            out[key] = math.fsum(values)
        elif how == "mean":
            out[key] = math.fsum(values) / len(values)
        elif how == "l2":
            out[key] = math.sqrt(math.fsum(v * v for v in values))
        else:
            out[key] = max(values) if how == "max" else min(values)
    return out if keepdims else out.reshape([d for i, d in enumerate(x.shape) if i not in axes])


def where_naive(condition, x, y):
    """Element by element over the broadcast shape: x where the condition is non-zero, else y."""
    shape = np.broadcast_shapes(condition.shape, x.shape, y.shape)
    c, x, y = (np.broadcast_to(a, shape) for a in (condition, x, y))
    out = np.empty(shape)
    for index in np.ndindex(*shape):
        out[index] = x[index] if c[index] != 0 else y[index]
    return out


REFERENCE_OPS = {
    "Conv2d": lambda node, x: _conv(node, x),
    "Conv1d": lambda node, x: conv_nd(x, _param(node, "weight"), _param(node, "bias"), node.attrs["stride"],
                                      node.attrs["pads"], node.attrs["dilation"], node.attrs["groups"]),
    "Conv3d": lambda node, x: conv_nd(x, _param(node, "weight"), _param(node, "bias"), node.attrs["stride"],
                                      node.attrs["pads"], node.attrs["dilation"], node.attrs["groups"]),
    "ConvTranspose1d": lambda node, x: _conv_transpose(node, x),
    "ConvTranspose2d": lambda node, x: _conv_transpose(node, x),
    "ConvTranspose3d": lambda node, x: _conv_transpose(node, x),
    "Linear": lambda node, x: linear(x, _param(node, "weight"), _param(node, "bias")),
    "ReLU": lambda node, x: np.where(x > 0, x, 0.0),
    "LeakyReLU": lambda node, x: np.where(x >= 0, x, node.attrs["negative_slope"] * x),
    "ReLU6": lambda node, x: np.minimum(np.maximum(x, 0.0), 6.0),
    "Sigmoid": lambda node, x: 1.0 / (1.0 + np.exp(-x)),
    "Tanh": lambda node, x: np.tanh(x),
    "Softsign": lambda node, x: x / (1.0 + np.abs(x)),
    "Softmax": lambda node, x: softmax(x, node.attrs["axis"]),
    "BatchNorm2d": lambda node, x: batch_norm(x, _param(node, "weight"), _param(node, "bias"),
                                              _param(node, "running_mean"), _param(node, "running_var"),
                                              node.attrs["eps"]),
    "BatchNorm1d": lambda node, x: batch_norm(x, _param(node, "weight"), _param(node, "bias"),
                                              _param(node, "running_mean"), _param(node, "running_var"),
                                              node.attrs["eps"]),
    "BatchNorm3d": lambda node, x: batch_norm(x, _param(node, "weight"), _param(node, "bias"),
                                              _param(node, "running_mean"), _param(node, "running_var"),
                                              node.attrs["eps"]),
    "MaxPool2d": lambda node, x: _max_pool(node, x),
    "AvgPool2d": lambda node, x: _avg_pool(node, x),
    "GlobalAvgPool2d": lambda node, x: np.mean(x, axis=(2, 3), keepdims=True),
    "Flatten": lambda node, x: flatten(x, node.attrs["start_dim"], node.attrs["end_dim"]),
    "Add": lambda node, *xs: sum(xs[1:], start=xs[0].copy()),
    "Concat": lambda node, *xs: np.concatenate(xs, axis=node.attrs["axis"]),
    "Identity": lambda node, x: x.copy(),
    "Dropout": lambda node, x: x.copy(),
    "Constant": lambda node: _param(node, "value"),
    "Mul": lambda node, a, b: a * b,
    "Sub": lambda node, a, b: a - b,
    "Div": lambda node, a, b: a / b,
    "MatMul": lambda node, a, b: matmul(a, b),
    "Transpose": lambda node, x: np.transpose(x, node.attrs["perm"]).copy(),
    "Pad": lambda node, x: pad(x, node.attrs["pads"], node.attrs["mode"], node.attrs["value"]),
    "Reshape": lambda node, x: reshape(x, node.attrs["shape"], node.bindings),
    "ReduceMean": lambda node, x: reduce_naive(x, node.attrs["axes"], node.attrs["keepdims"], "mean"),
    "ReduceSum": lambda node, x: reduce_naive(x, node.attrs["axes"], node.attrs["keepdims"], "sum"),
    "ReduceMax": lambda node, x: reduce_naive(x, node.attrs["axes"], node.attrs["keepdims"], "max"),
    "ReduceMin": lambda node, x: reduce_naive(x, node.attrs["axes"], node.attrs["keepdims"], "min"),
    "ReduceL2": lambda node, x: reduce_naive(x, node.attrs["axes"], node.attrs["keepdims"], "l2"),
    "Where": lambda node, x, y: where_naive(_param(node, "condition"), x, y),
    "GlobalMaxPool2d": lambda node, x: np.max(x, axis=(2, 3), keepdims=True),
    "LocalResponseNorm": lambda node, x: local_response_norm(x, node.attrs["size"], node.attrs["alpha"],
                                                             node.attrs["beta"], node.attrs["k"]),
    "Hardtanh": lambda node, x: np.minimum(np.maximum(x, node.attrs["min_val"]), node.attrs["max_val"]),
    "Slice": lambda node, x: onnx_slice(x, node.attrs["starts"], node.attrs["ends"], node.attrs["axes"],
                                        node.attrs["steps"]),
    "IndexSelect": lambda node, x: index_select(x, node.attrs["dim"], node.attrs["index"]),
    "Expand": lambda node, x: expand(x, [node.bindings.get(d, d) for d in node.attrs["shape"]]),
    "Tile": lambda node, x: tile(x, node.attrs["dims"]),
    "Upsample": lambda node, x: upsample(x, node.attrs),
}


# --- 1-D and 3-D pooling (and any other rank): every output position, every tap --------------------------------
def pool_nd(x, kernel, stride, pads, dilation, ceil_mode, maximum, count_include_pad=True):
    """MaxPool/AvgPool over the len(kernel) trailing axes of x (N, C, *spatial); pads are the begins then the
    ends; the windows and divisors of max_pool2d/avg_pool2d above, axis by axis."""
    dims = len(kernel)
    axes = [_pool_windows(x.shape[2 + i], kernel[i], stride[i], pads[i], pads[dims + i], dilation[i], ceil_mode)
            for i in range(dims)]
    out = np.zeros((*x.shape[:2], *(len(w) for w in axes)))
    for index in itertools.product(*(range(len(w)) for w in axes)):
        windows = [axes[i][j] for i, j in enumerate(index)]
        taps = [x[(slice(None), slice(None), *tap)] for tap in itertools.product(*(w[0] for w in windows))]
        if maximum:
            out[(slice(None), slice(None), *index)] = np.max(taps, axis=0) if taps else -np.inf
            continue
        if count_include_pad:   # the window clipped to the padded input, as in avg_pool2d
            count = math.prod(min(start + kernel[i], x.shape[2 + i] + pads[dims + i]) - start
                              for i, (_, start) in enumerate(windows))
        else:
            count = len(taps)
        out[(slice(None), slice(None), *index)] = sum(taps) / count
    return out


def _pool_nd_op(maximum):
    def run(node, x):
        a = node.attrs
        dilation = a.get("dilation", (1,) * len(a["kernel_size"]))
        return pool_nd(x, a["kernel_size"], a["stride"], a["pads"], dilation, a["ceil_mode"], maximum,
                       a.get("count_include_pad", True))
    return run


REFERENCE_OPS.update({f"{kind}Pool{dims}d": _pool_nd_op(kind == "Max") for kind in ("Max", "Avg") for dims in (1, 3)})


# --- adaptive pooling: window i of an axis of n cells pooled to m is [floor(i·n/m), ceil((i+1)·n/m)) -----------
def adaptive_pool(x, out_sizes, maximum):
    sizes = x.shape[2:]
    out = np.zeros((*x.shape[:2], *out_sizes))
    for index in itertools.product(*(range(m) for m in out_sizes)):
        window = tuple(slice(math.floor(i * n / m), math.ceil((i + 1) * n / m))
                       for i, n, m in zip(index, sizes, out_sizes))
        cells = x[(slice(None), slice(None), *window)].reshape(*x.shape[:2], -1)
        out[(slice(None), slice(None), *index)] = cells.max(axis=2) if maximum else cells.mean(axis=2)
    return out


REFERENCE_OPS.update({f"Adaptive{kind}Pool{dims}d": (
    lambda node, x, maximum=kind == "Max": adaptive_pool(x, node.type.shape[2:], maximum))
    for kind in ("Max", "Avg") for dims in (1, 2, 3)})


# --- per-sample normalisations (LayerNorm, GroupNorm, InstanceNorm): one group of values at a time ------------
def _standardized(values, eps):
    mean = sum(values.reshape(-1)) / values.size
    variance = sum((v - mean) ** 2 for v in values.reshape(-1)) / values.size
    return (values - mean) / math.sqrt(variance + eps)


def layer_norm(x, normalized_shape, eps, weight, bias):
    out = np.empty_like(x)
    for index in np.ndindex(*x.shape[:x.ndim - len(normalized_shape)]):
        out[index] = _standardized(x[index], eps)
        out[index] = out[index] * (1.0 if weight is None else weight) + (0.0 if bias is None else bias)
    return out


def group_norm(x, groups, eps, weight, bias):
    out = np.empty_like(x)
    size = x.shape[1] // groups
    for n in range(x.shape[0]):
        for g in range(groups):
            out[n, g * size:(g + 1) * size] = _standardized(x[n, g * size:(g + 1) * size], eps)
        for c in range(x.shape[1]):
            out[n, c] = out[n, c] * (1.0 if weight is None else weight[c]) + (0.0 if bias is None else bias[c])
    return out


def _sample_norm_ops():
    layer = lambda node, x: layer_norm(x, node.attrs["normalized_shape"], node.attrs["eps"],  # noqa: E731
                                       _param(node, "weight"), _param(node, "bias"))
    group = lambda node, x: group_norm(x, node.attrs["num_groups"], node.attrs["eps"],  # noqa: E731
                                       _param(node, "weight"), _param(node, "bias"))
    instance = lambda node, x: group_norm(x, x.shape[1], node.attrs["eps"],  # noqa: E731
                                          _param(node, "weight"), _param(node, "bias"))
    return {"LayerNorm": layer, "GroupNorm": group, "InstanceNorm1d": instance, "InstanceNorm2d": instance,
            "InstanceNorm3d": instance}


REFERENCE_OPS.update(_sample_norm_ops())


# --- modern activations, float64, with Python's math.erf element by element ---------------------------------
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_erf = np.vectorize(math.erf, otypes=[np.float64])


def prelu(x, weight):
    """One slope, or slope c on channel c of axis 1."""
    out = np.array(x, dtype=np.float64)
    for index in np.ndindex(*x.shape):
        slope = weight[0] if weight.size == 1 else weight[index[1]]
        if x[index] < 0:
            out[index] = slope * x[index]
    return out


def celu(x, alpha):
    return np.maximum(x, 0.0) + np.minimum(0.0, alpha * (np.exp(np.minimum(x, 0.0) / alpha) - 1.0))


def gelu(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def softplus(x, beta, threshold):
    with np.errstate(over="ignore"):
        smooth = np.log1p(np.exp(beta * x)) / beta
    return np.where(beta * x > threshold, x, smooth)


REFERENCE_OPS.update({   # modern activations (PyTorch's documented formulas) and element-wise math
    "PReLU": lambda node, x: prelu(x, _param(node, "weight")),
    "ELU": lambda node, x: np.where(x > 0, x, node.attrs["alpha"] * (np.exp(np.minimum(x, 0.0)) - 1.0)),
    "SELU": lambda node, x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * (np.exp(np.minimum(x, 0.0)) - 1.0)),
    "CELU": lambda node, x: celu(x, node.attrs["alpha"]),
    "GELU": lambda node, x: gelu(x, node.attrs["approximate"]),
    "SiLU": lambda node, x: x / (1.0 + np.exp(-x)),
    "Mish": lambda node, x: x * np.tanh(softplus(x, 1.0, 20.0)),
    "Hardsigmoid": lambda node, x: np.clip(node.attrs["alpha"] * x + node.attrs["beta"], 0.0, 1.0),
    "Hardswish": lambda node, x: x * np.minimum(np.maximum(x + 3.0, 0.0), 6.0) / 6.0,
    "Softplus": lambda node, x: softplus(x, node.attrs["beta"], node.attrs["threshold"]),
    "LogSoftmax": lambda node, x: np.log(softmax(x, node.attrs["dim"])),
    "Abs": lambda node, x: np.abs(x),
    "Neg": lambda node, x: -x,
    "Exp": lambda node, x: np.exp(x),
    "Log": lambda node, x: np.log(x),
    "Sqrt": lambda node, x: np.sqrt(x),
    "Reciprocal": lambda node, x: 1.0 / x,
    "Erf": lambda node, x: _erf(x),
    "Pow": lambda node, a, b: np.power(a, b),
    "Max": lambda node, *xs: np.maximum.reduce(np.broadcast_arrays(*xs)),
    "Min": lambda node, *xs: np.minimum.reduce(np.broadcast_arrays(*xs)),
})


def _check_shape(node, array):
    """The reference's own output size must agree with the IR's inferred type (static dims)."""
    shape = node.type.shape
    assert len(shape) == array.ndim and all(not isinstance(d, int) or d == s for d, s in zip(shape, array.shape)), \
        f"{node.label()}: reference computed shape {array.shape}, the IR inferred {shape}"


def reference_run(graph, *arrays):
    """Run ``graph`` on ``arrays`` (converted to float64); one array for a single output, else a tuple."""
    if len(arrays) != len(graph.inputs):
        raise ValueError(f"reference_run: graph takes {len(graph.inputs)} inputs, got {len(arrays)}")
    values = {name: np.array(a, dtype=np.float64) for name, a in zip(graph.inputs, arrays)}
    bindings = {d: size for name in graph.inputs for d, size in zip(graph.type_of(name).shape, values[name].shape)
                if isinstance(d, str)}
    for node in graph.nodes:
        if node.op == "Input":
            assert node.name in values, f"input {node.name!r} not in graph.inputs"
            _check_shape(node, values[node.name])
            continue
        result = REFERENCE_OPS[node.op](_Bound(node, bindings), *(values[i] for i in node.inputs))
        fused = node.attrs.get("activation")
        if fused:                                            # Conv2d/Linear with a fused activation
            result = REFERENCE_OPS[fused["op"]](_Fused(fused["attrs"]), result)
        _check_shape(node, result)
        values[node.name] = result
    outputs = tuple(values[name] for name in graph.outputs)
    return outputs[0] if len(outputs) == 1 else outputs


# --- training graphs: gradients and losses (float64, loops over output positions and taps) --------------------
def conv2d_grad_input(dy, weight, input_size, stride, pads, dilation, groups):
    """Every output pixel sends w·dy back to each input pixel its window read."""
    n, cout, ho, wo = dy.shape
    _, cin_g, kh, kw = weight.shape
    h, w = input_size
    top, left, bottom, right = pads
    cout_g = cout // groups
    dxp = np.zeros((n, cin_g * groups, h + top + bottom + stride[0] * kh * dilation[0],
                    w + left + right + stride[1] * kw * dilation[1]))
    for o in range(cout):
        g = o // cout_g
        for i in range(ho):
            for j in range(wo):
                for a in range(kh):
                    for b in range(kw):
                        r, q = i * stride[0] + a * dilation[0], j * stride[1] + b * dilation[1]
                        dxp[:, g * cin_g:(g + 1) * cin_g, r, q] += dy[:, o, i, j][:, None] * weight[o, :, a, b]
    return dxp[:, :, top:top + h, left:left + w]


def conv2d_grad_weight(x, dy, kernel, stride, pads, dilation, groups):
    n, cin, h, w = x.shape
    _, cout, ho, wo = dy.shape
    top, left, bottom, right = pads
    cin_g, cout_g = cin // groups, cout // groups
    xpad = np.zeros((n, cin, h + top + bottom + stride[0] * kernel[0] * dilation[0],
                     w + left + right + stride[1] * kernel[1] * dilation[1]))
    xpad[:, :, top:top + h, left:left + w] = x
    dw = np.zeros((cout, cin_g, *kernel))
    for o in range(cout):
        g = o // cout_g
        for a in range(kernel[0]):
            for b in range(kernel[1]):
                for i in range(ho):
                    for j in range(wo):
                        r, q = i * stride[0] + a * dilation[0], j * stride[1] + b * dilation[1]
                        dw[o, :, a, b] += dy[:, o, i, j] @ xpad[:, g * cin_g:(g + 1) * cin_g, r, q]
    return dw


def max_pool2d_grad(x, y, dy, kernel, stride, pads, dilation, ceil_mode):
    """Each window's dy goes to the first (row-major) of its inputs equal to the window's maximum y."""
    n, c, h, w = x.shape
    top, left, bottom, right = pads
    rows = _pool_windows(h, kernel[0], stride[0], top, bottom, dilation[0], ceil_mode)
    cols = _pool_windows(w, kernel[1], stride[1], left, right, dilation[1], ceil_mode)
    dx = np.zeros_like(x)
    for i, (rr, _) in enumerate(rows):
        for j, (cc, _) in enumerate(cols):
            taps = [(r, q) for r in rr for q in cc]
            if not taps:
                continue
            free = np.ones(x.shape[:2], bool)
            for r, q in taps:
                first = free & (x[:, :, r, q] == y[:, :, i, j])
                dx[:, :, r, q] += np.where(first, dy[:, :, i, j], 0.0)
                free &= ~first
    return dx


def avg_pool2d_grad(dy, input_size, kernel, stride, pads, ceil_mode, count_include_pad):
    n, c = dy.shape[:2]
    h, w = input_size
    top, left, bottom, right = pads
    rows = _pool_windows(h, kernel[0], stride[0], top, bottom, 1, ceil_mode)
    cols = _pool_windows(w, kernel[1], stride[1], left, right, 1, ceil_mode)
    dx = np.zeros((n, c, h, w))
    for i, (rr, r0) in enumerate(rows):
        for j, (cc, c0) in enumerate(cols):
            if count_include_pad:
                count = (min(r0 + kernel[0], h + bottom) - r0) * (min(c0 + kernel[1], w + right) - c0)
            else:
                count = len(rr) * len(cc)
            for r in rr:
                for q in cc:
                    dx[:, :, r, q] += dy[:, :, i, j] / count
    return dx


def activation_grad(op, attrs, y, dy):
    """dL/dx from the activation's output, each derivative written out."""
    slope = {"ReLU": lambda: (y > 0) * 1.0, "ReLU6": lambda: ((y > 0) & (y < 6)) * 1.0,
             "Hardtanh": lambda: ((y > attrs.get("min_val", 0)) & (y < attrs.get("max_val", 0))) * 1.0,
             "LeakyReLU": lambda: np.where(y > 0, 1.0, attrs.get("negative_slope", 0)),
             "Sigmoid": lambda: y - y ** 2, "Tanh": lambda: 1.0 - y ** 2, "Softsign": lambda: (1.0 - np.abs(y)) ** 2}
    return dy * slope[op]()


def _other_axes(x, axis):
    return tuple(i for i in range(x.ndim) if i != axis % x.ndim)


def _channel(vector, x):
    return np.asarray(vector, np.float64).reshape((1, -1) + (1,) * (x.ndim - 2))


def _from_stats(x, stats):
    """Mean and biased variance (keepdims) from BatchStats' (mean, unbiased variance)."""
    count = x.size // x.shape[1]
    return _channel(stats[0], x), _channel(stats[1], x) * ((count - 1) / count if count > 1 else 1.0)


def batch_norm_train(x, stats, weight, bias, eps):
    mean, var = _from_stats(x, stats)
    return (x - mean) / np.sqrt(var + eps) * _channel(weight, x) + _channel(bias, x)


def batch_stats(x):
    axes = _other_axes(x, 1)
    count = x.size // x.shape[1]
    return np.stack([x.mean(axis=axes), x.var(axis=axes, ddof=1 if count > 1 else 0)])


def batch_norm_grad(x, dy, params, eps, training, wrt, stats=None, dweight=None, dbias=None):
    """In training, from the statistics, ∂weight and ∂bias the op reads (see BatchNorm2dGrad)."""
    axes = _other_axes(x, 1)
    if training:
        mean, var = _from_stats(x, stats)
    else:
        mean, var = _channel(params["running_mean"], x), _channel(params["running_var"], x)
    normalized = (x - mean) / np.sqrt(var + eps)
    if wrt == "weight":
        return np.sum(dy * normalized, axis=axes)
    scale = _channel(params["weight"], x) / np.sqrt(var + eps)
    if not training:
        return dy * scale
    count = x.size // x.shape[1]
    return scale / count * (count * dy - _channel(dbias, x) - normalized * _channel(dweight, x))


def sum_to_shape(x, shape):
    extra = x.ndim - len(shape)
    summed = x.sum(axis=tuple(range(extra))) if extra else x
    for axis, size in enumerate(shape):
        if size == 1 and summed.shape[axis] != 1:
            summed = summed.sum(axis=axis, keepdims=True)
    return summed


def cross_entropy(z, target):
    log_p = z - np.max(z, axis=1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    return -np.mean([log_p[i, int(t)] for i, t in enumerate(target)])


def cross_entropy_grad(z, target):
    p = softmax(z, 1)
    for i, t in enumerate(target):
        p[i, int(t)] -= 1.0
    return p / len(z)


def _bn_params(node):
    return {k: _param(node, k) for k in ("weight", "bias", "running_mean", "running_var")}


REFERENCE_OPS.update({
    "Conv2dGradInput": lambda node, dy: conv2d_grad_input(dy, _param(node, "weight"), node.attrs["input_size"],
                                                          node.attrs["stride"], node.attrs["pads"],
                                                          node.attrs["dilation"], node.attrs["groups"]),
    "Conv2dGradWeight": lambda node, x, dy: conv2d_grad_weight(x, dy, node.attrs["kernel_size"], node.attrs["stride"],
                                                               node.attrs["pads"], node.attrs["dilation"],
                                                               node.attrs["groups"]).reshape(dy.shape[1], -1),
    "LinearGradInput": lambda node, dy: np.einsum("...o,oi->...i", dy, _param(node, "weight")),
    "LinearGradWeight": lambda node, x, dy: dy.reshape(-1, dy.shape[-1]).T @ x.reshape(-1, x.shape[-1]),
    "MaxPool2dGrad": lambda node, x, y, dy: max_pool2d_grad(x, y, dy, node.attrs["kernel_size"], node.attrs["stride"],
                                                            node.attrs["pads"], node.attrs["dilation"],
                                                            node.attrs["ceil_mode"]),
    "AvgPool2dGrad": lambda node, dy: avg_pool2d_grad(dy, node.attrs["input_size"], node.attrs["kernel_size"],
                                                      node.attrs["stride"], node.attrs["pads"], node.attrs["ceil_mode"],
                                                      node.attrs["count_include_pad"]),
    "GlobalAvgPool2dGrad": lambda node, dy: np.broadcast_to(dy, (*dy.shape[:2], *node.attrs["input_size"]))
    / np.prod(node.attrs["input_size"]),
    "ActivationGrad": lambda node, y, dy: activation_grad(node.attrs["function"]["op"],
                                                          node.attrs["function"]["attrs"], y, dy),
    "SoftmaxGrad": lambda node, y, dy: y * (dy - np.sum(y * dy, axis=node.attrs["axis"], keepdims=True)),
    "SumExcept": lambda node, x: x.sum(axis=_other_axes(x, node.attrs["axis"])),
    "SumToShape": lambda node, x: sum_to_shape(x, node.attrs["shape"]),
    "ConcatGrad": lambda node, x: np.take(x, range(node.attrs["start"], node.attrs["start"] + node.attrs["length"]),
                                          axis=node.attrs["axis"]),
    "BatchNorm2dTrain": lambda node, x, stats: batch_norm_train(x, stats, _param(node, "weight"),
                                                                _param(node, "bias"), node.attrs["eps"]),
    "BatchStats": lambda node, x: batch_stats(x),
    "BatchNorm2dGrad": lambda node, x, dy, *read: batch_norm_grad(x, dy, _bn_params(node), node.attrs["eps"],
                                                                  node.attrs["training"], node.attrs["wrt"], *read),
    "CrossEntropyLoss": lambda node, z, t: np.array(cross_entropy(z, t)),
    "CrossEntropyLossGrad": lambda node, z, t: cross_entropy_grad(z, t),
    "MSELoss": lambda node, p, t: np.array(np.mean((p - t) ** 2)),
    "MSELossGrad": lambda node, p, t: 2.0 * (p - t) / p.size,
})


# --- gradients of the modern activations and element-wise math, float64, each derivative written out -------------
def input_derivative(op, attrs, x):
    """f'(x) by the textbook formulas (math.erf and math.exp element by element for GELU)."""
    sigmoid = 1.0 / (1.0 + np.exp(-np.clip(x, -500, 500)))
    if op == "ELU":
        return np.where(x > 0, 1.0, attrs["alpha"] * np.exp(np.minimum(x, 0.0)))
    if op == "SELU":
        return SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0.0)))
    if op == "CELU":
        return np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0) / attrs["alpha"]))
    if op == "GELU" and attrs["approximate"] == "tanh":
        k = math.sqrt(2.0 / math.pi)
        inner = np.tanh(k * (x + 0.044715 * x ** 3))
        return 0.5 * (1.0 + inner) + 0.5 * x * (1.0 - inner ** 2) * k * (1.0 + 3 * 0.044715 * x ** 2)
    if op == "GELU":
        return 0.5 * (1.0 + _erf(x / math.sqrt(2.0))) + x * np.exp(-x ** 2 / 2) / math.sqrt(2.0 * math.pi)
    if op == "SiLU":
        return sigmoid + x * sigmoid * (1.0 - sigmoid)
    if op == "Mish":
        t = np.tanh(softplus(x, 1.0, 20.0))
        return t + x * (1.0 - t ** 2) * sigmoid
    if op == "Hardswish":
        return np.select([x < -3.0, x <= 3.0], [0.0, (2.0 * x + 3.0) / 6.0], 1.0)
    if op == "Hardsigmoid":
        z = attrs["alpha"] * x + attrs["beta"]
        return np.where((z > 0) & (z < 1), attrs["alpha"], 0.0)
    if op == "Softplus":
        z = attrs["beta"] * x
        return np.where(z > attrs["threshold"], 1.0, 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500))))
    if op == "Abs":
        return np.sign(x)
    if op == "Erf":
        return 2.0 / math.sqrt(math.pi) * np.exp(-x ** 2)
    if op == "LeakyReLU":
        return np.where(x > 0, 1.0, attrs["negative_slope"])
    raise KeyError(op)


def prelu_grad(x, dy, weight, wrt):
    slopes = weight.reshape((1, -1) + (1,) * (x.ndim - 2)) if weight.size > 1 else weight.reshape(())
    if wrt == "x":
        return np.where(x > 0, dy, slopes * dy)
    negative = dy * np.where(x < 0, x, 0.0)
    return negative.sum(axis=_other_axes(x, 1)) if weight.size > 1 else negative.sum().reshape(1)


def extremum_grad(index, y, dy, *operands):
    """dy where operand ``index`` is the first (in order) equal to y."""
    full = np.broadcast_arrays(*operands)
    earlier = np.zeros(y.shape, bool)
    for x in full[:index]:
        earlier = earlier | (x == y)
    return np.where((full[index] == y) & ~earlier, dy, 0.0)


REFERENCE_OPS.update({
    "ElementwiseGrad": lambda node, x, dy: dy * input_derivative(node.attrs["function"]["op"],
                                                                 node.attrs["function"]["attrs"], x),
    "LogSoftmaxGrad": lambda node, y, dy: dy - np.exp(y) * dy.sum(axis=node.attrs["dim"], keepdims=True),
    "PReLUGrad": lambda node, x, dy: prelu_grad(x, dy, _param(node, "weight"), node.attrs["wrt"]),
    "ExtremumGrad": lambda node, y, dy, *xs: extremum_grad(node.attrs["index"], y, dy, *xs),
})


# --- gradients of the tensor ops: loops over positions, or the forward reference applied to a basis -------------
def gather_grad(dy, axis, index, size):
    axis %= dy.ndim
    out = np.zeros((*dy.shape[:axis], size, *dy.shape[axis + 1:]))
    for j, i in enumerate(index):
        out[(slice(None),) * axis + (i,)] += dy[(slice(None),) * axis + (j,)]
    return out


def reduce_grad(x, y, dy, how, axes, keepdims):
    """Cell by cell: max/min share ∂y among the elements equal to the extremum; L2 gives ∂y·x/y."""
    axes = {a % x.ndim for a in axes} if axes else set(range(x.ndim))
    kept = [1 if i in axes else d for i, d in enumerate(x.shape)]
    y, dy = y.reshape(kept), dy.reshape(kept)
    out = np.zeros(x.shape)
    for index in np.ndindex(*x.shape):
        cell = tuple(0 if i in axes else v for i, v in enumerate(index))
        if how == "l2":
            out[index] = dy[cell] * x[index] / y[cell] if y[cell] > 0 else 0.0
            continue
        group = x[tuple(slice(None) if i in axes else slice(v, v + 1) for i, v in enumerate(index))]
        out[index] = dy[cell] / np.sum(group == y[cell]) if x[index] == y[cell] else 0.0
    return out


def upsample_grad(dy, attrs):
    """The transpose of the reference upsample, column by column: ∂x[k] = Σ ∂y · upsample(e_k)."""
    forward = {k: v for k, v in attrs.items() if k != "input_size"}
    size = attrs["input_size"]
    out = np.zeros((*dy.shape[:2], *size))
    for k in np.ndindex(*size):
        basis = np.zeros((1, 1, *size))
        basis[(0, 0, *k)] = 1.0
        column = upsample(basis, forward)[0, 0]
        out[(Ellipsis, *k)] = np.sum(dy * column, axis=tuple(range(2, dy.ndim)))
    return out


REFERENCE_OPS.update({
    "GatherGrad": lambda node, dy: gather_grad(dy, node.attrs["axis"], node.attrs["index"], node.attrs["size"]),
    "ReduceGrad": lambda node, x, y, dy: reduce_grad(x, y, dy, node.attrs["how"], node.attrs["axes"],
                                                     node.attrs["keepdims"]),
    "UpsampleGrad": lambda node, dy: upsample_grad(dy, node.attrs),
})


# --- gradients of the per-sample normalisations: group by group, the textbook formula -----------------------------
def _norm_groups(op, attrs, x):
    """The index of every normalised group of x."""
    if op == "LayerNorm":
        return list(np.ndindex(*x.shape[:x.ndim - len(attrs["normalized_shape"])]))
    size = x.shape[1] // (attrs["num_groups"] if op == "GroupNorm" else x.shape[1])
    return [(n, slice(g * size, (g + 1) * size)) for n in range(x.shape[0]) for g in range(x.shape[1] // size)]


def sample_norm_grad(x, dy, weight, op, attrs, wrt):
    scale = np.ones(x.shape) if weight is None else (
        np.broadcast_to(weight, x.shape) if op == "LayerNorm" else np.broadcast_to(_channel(weight, x), x.shape))
    dx, normalized = np.zeros(x.shape), np.zeros(x.shape)
    for group in _norm_groups(op, attrs, x):
        values = x[group]
        mean = values.mean()
        inv_std = 1.0 / math.sqrt(((values - mean) ** 2).mean() + attrs["eps"])
        xhat = (values - mean) * inv_std
        normalized[group] = xhat
        g = dy[group] * scale[group]
        dx[group] = inv_std * (g - g.mean() - xhat * (g * xhat).mean())
    if wrt == "x":
        return dx
    product = dy * normalized
    if op == "LayerNorm":
        return product.reshape(-1, *attrs["normalized_shape"]).sum(axis=0)
    return product.sum(axis=_other_axes(x, 1))


REFERENCE_OPS["SampleNormGrad"] = lambda node, x, dy: sample_norm_grad(
    x, dy, _param(node, "weight"), node.attrs["norm"]["op"], node.attrs["norm"]["attrs"], node.attrs["wrt"])


# --- gradients of the N-D convolutions and pools: loops over taps and windows, or the forward on a basis ----------
def conv_nd_grad_weight(x, dy, kernel, stride, pads, dilation, groups):
    """∂W[o, c, tap] = Σ over samples and output positions of ∂y[·, o, pos] · x_padded[·, group's c, pos·s + tap·d]."""
    n, cin, *size = x.shape
    cout, dims = dy.shape[1], len(size)
    xpad = np.zeros((n, cin, *(size[i] + pads[i] + pads[dims + i] for i in range(dims))))
    xpad[(slice(None), slice(None)) + tuple(slice(pads[i], pads[i] + size[i]) for i in range(dims))] = x
    cin_g, cout_g = cin // groups, cout // groups
    dw = np.zeros((cout, cin_g, *kernel))
    for o, c, tap, pos in itertools.product(range(cout), range(cin_g), np.ndindex(*kernel), np.ndindex(*dy.shape[2:])):
        cell = tuple(p * s + t * d for p, s, t, d in zip(pos, stride, tap, dilation))
        dw[(o, c, *tap)] += np.sum(dy[(slice(None), o, *pos)] * xpad[(slice(None), o // cout_g * cin_g + c, *cell)])
    return dw


def spatial_vjp(forward, dy, size):
    """∂x of a map acting alike on every (sample, channel) and linearly on the spatial axes: column by column,
    ∂x[·, ·, k] = Σ ∂y · forward(e_k)."""
    out = np.zeros((*dy.shape[:2], *size))
    for k in np.ndindex(*size):
        basis = np.zeros((1, 1, *size))
        basis[(0, 0, *k)] = 1.0
        out[(Ellipsis, *k)] = np.sum(dy * forward(basis)[0, 0], axis=tuple(range(2, dy.ndim)))
    return out


def max_pool_nd_grad(x, y, dy, a):
    """Window by window: ∂y to the first (row-major) cell equal to the window's y (none if no cell is)."""
    dims = len(a["kernel_size"])
    axes = [_pool_windows(x.shape[2 + i], a["kernel_size"][i], a["stride"][i], a["pads"][i], a["pads"][dims + i],
                          a["dilation"][i], a["ceil_mode"]) for i in range(dims)]
    dx = np.zeros(x.shape)
    for index in itertools.product(*(range(len(w)) for w in axes)):
        cells = list(itertools.product(*(axes[i][j][0] for i, j in enumerate(index))))
        for n, c in np.ndindex(*x.shape[:2]):
            if cells:
                first_max(dx, x, y, dy, (n, c), cells, index)
    return dx


def first_max(dx, x, y, dy, sample, cells, index):
    """∂y of one window to its first cell equal to y (MaxPool2dGrad's convention), none if no cell is."""
    hits = [cell for cell in cells if x[(*sample, *cell)] == y[(*sample, *index)]]
    if hits:
        dx[(*sample, *hits[0])] += dy[(*sample, *index)]


def adaptive_max_pool_grad(x, y, dy):
    """Window by window (PyTorch's [floor(i·n/m), ceil((i+1)·n/m))): ∂y to its first (row-major) cell equal
    to y."""
    sizes, outs = x.shape[2:], dy.shape[2:]
    dx = np.zeros(x.shape)
    for index in itertools.product(*(range(m) for m in outs)):
        ranges = [range(math.floor(i * n / m), math.ceil((i + 1) * n / m)) for i, n, m in zip(index, sizes, outs)]
        cells = list(itertools.product(*ranges))
        for n, c in np.ndindex(*x.shape[:2]):
            first_max(dx, x, y, dy, (n, c), cells, index)
    return dx


def _avg_pool_nd_grad(node, dy):
    a = node.attrs
    return spatial_vjp(lambda b: pool_nd(b, a["kernel_size"], a["stride"], a["pads"], (1,) * len(a["kernel_size"]),
                                         a["ceil_mode"], False, a["count_include_pad"]), dy, a["input_size"])


REFERENCE_OPS.update({
    "ConvNdGradWeight": lambda node, x, dy: conv_nd_grad_weight(x, dy, node.attrs["kernel_size"], node.attrs["stride"],
                                                                node.attrs["pads"], node.attrs["dilation"],
                                                                node.attrs["groups"]),
    "MaxPoolNdGrad": lambda node, x, y, dy: max_pool_nd_grad(x, y, dy, node.attrs),
    "AvgPoolNdGrad": _avg_pool_nd_grad,
    "AdaptiveAvgPoolGrad": lambda node, dy: spatial_vjp(lambda b: adaptive_pool(b, dy.shape[2:], False), dy,
                                                        node.attrs["input_size"]),
    "AdaptiveMaxPoolGrad": lambda node, x, y, dy: adaptive_max_pool_grad(x, y, dy),
})
