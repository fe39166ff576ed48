"""Random small CNN graphs, drawn by hypothesis, for differential testing of the optimizer.

Each graph is a Case (tests/graph_case.py): built through the public API, it prints as the script that rebuilds it.
Every attribute a pass reads is drawn: kernel (1..5, non-square), stride, padding (int, pair, "same", "valid",
(top, left, bottom, right)), dilation (1..3), groups (dense, depthwise, other divisors), bias; pooling's
padding, dilation, ceil_mode and count_include_pad; BatchNorm statistics; per-channel constants. And the
structure: chains, RepVGG branches summed by Add (3×3 + 1×1 + identity + BatchNorm), Concat, shared weights,
values read twice, outputs taken from the middle, consecutive linear layers with and without a non-linearity
between, Linear chains with bottlenecks.
"""
from __future__ import annotations

from hypothesis import strategies as st

try:
    from graph_case import Case
except ImportError:                                          # imported from the repository root
    from tests.graph_case import Case

MAX_CHANNELS = 8


# --- layer texts ------------------------------------------------------------------------------------------------
def _call(cls: str, positional, **keywords) -> str:
    """``cls(positional..., key=value...)``, leaving out keywords at their default (given as (value, default))."""
    args = [repr(a) for a in positional]
    args += [f"{k}={v!r}" for k, (v, default) in keywords.items() if v != default]
    return f"cg.{cls}({', '.join(args)})"


def _pair(draw, values) -> int | tuple:
    """An int, or sometimes a pair of two different ones (non-square kernels, strides, dilations)."""
    first = draw(values)
    second = draw(values) if draw(st.integers(0, 3)) == 0 else first
    return first if second == first else (first, second)


def _two(value) -> tuple[int, int]:
    return value if isinstance(value, tuple) else (value, value)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def draw_conv(draw, cin: int, size: tuple, cout: int | None = None, same: bool = False, valid: bool = False) -> str:
    """A Conv2d that fits an input of spatial ``size``; ``same`` keeps the size, ``valid`` leans to no padding."""
    if cout is None:
        cout = draw(st.integers(1, MAX_CHANNELS))
    groups = draw(st.sampled_from([g for g in _divisors(cin) if cout % g == 0]))
    dilation = _pair(draw, st.sampled_from([1, 1, 1, 2, 3]))
    modes = ["same"] if same else (["valid", "valid", "valid", "int", "pads"] if valid
                                   else ["int", "pair", "same", "valid", "pads"])
    mode = draw(st.sampled_from(modes))
    stride = 1 if mode == "same" else _pair(draw, st.sampled_from([1, 1, 2, 3]))
    if mode == "int":
        padding = draw(st.integers(0, 2))
        pads = (padding,) * 4
    elif mode == "pair":
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        pads = padding + padding
    elif mode == "pads":
        padding = pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    else:
        padding, pads = mode, (0, 0, 0, 0)
    kernel = []
    for axis, d in enumerate(_two(dilation)):
        room = 5 if mode == "same" else (size[axis] + pads[axis] + pads[axis + 2] - 1) // d + 1
        kernel.append(draw(st.integers(1, min(5, room))))
    kernel = kernel[0] if kernel[0] == kernel[1] and draw(st.booleans()) else tuple(kernel)
    return _call("Conv2d", (cin, cout, kernel), stride=(stride, 1), padding=(padding, 0), dilation=(dilation, 1),
                 groups=(groups, 1), bias=(draw(st.booleans()), True))


def draw_pool(draw, size: tuple, kind: str | None = None) -> str:
    kind = kind or draw(st.sampled_from(["MaxPool2d", "AvgPool2d"]))
    dilation = draw(st.sampled_from([1, 1, 2])) if kind == "MaxPool2d" else 1
    kernel = [draw(st.integers(1, min(3, (s - 1) // dilation + 1))) for s in size]
    padding = [draw(st.integers(0, ((k - 1) * dilation + 1) // 2)) for k in kernel]
    stride = draw(st.sampled_from([None, 1, 2, 3]))
    keywords = dict(stride=(stride, None), padding=(tuple(padding), (0, 0)), ceil_mode=(draw(st.booleans()), False))
    if kind == "MaxPool2d":
        keywords["dilation"] = (dilation, 1)
    else:
        keywords["count_include_pad"] = (draw(st.booleans()), True)
    return _call(kind, (tuple(kernel),), **keywords)


def draw_activation(draw) -> str:
    return draw(st.sampled_from(["cg.ReLU()", "cg.ReLU6()", "cg.LeakyReLU(0.1)", "cg.Sigmoid()", "cg.Tanh()",
                                 "cg.Hardtanh(-0.5, 0.25)",
                                 "cg.GELU()", "cg.SiLU()", "cg.Hardswish()", "cg.ELU(0.5)", "cg.Mish()"]))


def apply_affine(draw, case: Case, x: str) -> str:
    """x·c or x + c (either order) with a constant per channel (axis 1), a scalar, or one not per channel."""
    shape = case.shape(x)
    channels, rank = shape[1], len(shape)
    choices = [(1, channels) + (1,) * (rank - 2), (channels,) + (1,) * (rank - 2), (), (1,)]
    if rank >= 3:
        choices.append((1,) * (rank - 1) + (shape[-1],))      # along the last axis, not per channel: must not fold
    shape = draw(st.sampled_from(choices))
    constant = case.apply(f"random_constant({shape!r}, rng)")
    if draw(st.integers(0, 3)) == 0:                           # computed from constants: constant_folding's case
        constant = case.apply("cg.Mul()", constant, case.apply(f"random_constant({shape!r}, rng)"))
    op = draw(st.sampled_from(["cg.Mul()", "cg.Add(broadcast=True)"]))
    operands = (x, constant) if draw(st.booleans()) else (constant, x)
    return case.apply(op, *operands)


# --- blocks on (N, C, H, W) -------------------------------------------------------------------------------------
def block_conv(draw, case, x):
    _, c, h, w = case.shape(x)
    return case.apply(draw_conv(draw, c, (h, w)), x)


def block_simple(draw, case, x):
    """One layer that keeps the shape: BatchNorm, a per-channel affine, an activation, Identity or Dropout."""
    kind = draw(st.sampled_from(["bn", "affine", "activation", "identity", "dropout"]))
    if kind == "bn":
        return case.apply(f"random_bn({case.shape(x)[1]}, rng)", x)
    if kind == "affine":
        return apply_affine(draw, case, x)
    text = {"identity": "cg.Identity()", "dropout": "cg.Dropout(0.25)"}.get(kind) or draw_activation(draw)
    return case.apply(text, x)


def block_pool(draw, case, x):
    if draw(st.integers(0, 4)) == 0:
        return case.apply("cg.GlobalAvgPool2d()", x)
    return case.apply(draw_pool(draw, case.shape(x)[2:]), x)


def block_norm_conv(draw, case, x):
    """(a non-linearity) -> BatchNorm or a per-channel affine -> conv: folded in front of the conv, unless the conv
    pads (the shift would reach the border)."""
    if draw(st.booleans()):
        x = case.apply(draw_activation(draw), x)
    x = case.apply(f"random_bn({case.shape(x)[1]}, rng)", x) if draw(st.booleans()) else apply_affine(draw, case, x)
    _, c, h, w = case.shape(x)
    return case.apply(draw_conv(draw, c, (h, w), valid=draw(st.booleans())), x)


def block_pool_conv(draw, case, x):
    """Average pooling -> conv: one conv at level 3 where that cuts MACs, unless the pool is not a convolution
    (ceil_mode, or padding it does not count)."""
    x = case.apply(draw_pool(draw, case.shape(x)[2:], "AvgPool2d"), x)
    _, c, h, w = case.shape(x)
    return case.apply(draw_conv(draw, c, (h, w), valid=True), x)


def block_conv_pair(draw, case, x):
    """conv -> (nothing, or something linear or not) -> conv: what fold_linear and fold_batchnorm look at."""
    _, c, h, w = case.shape(x)
    x = case.apply(draw_conv(draw, c, (h, w)), x)
    between = draw(st.sampled_from(["none", "none", "none", "bn", "avgpool", "avgpool", "maxpool", "activation",
                                    "affine", "identity"]))
    if between == "bn":
        x = case.apply(f"random_bn({case.shape(x)[1]}, rng)", x)
    elif between in ("avgpool", "maxpool"):
        x = case.apply(draw_pool(draw, case.shape(x)[2:], "AvgPool2d" if between == "avgpool" else "MaxPool2d"), x)
    elif between == "activation":
        x = case.apply(draw_activation(draw), x)
    elif between == "affine":
        x = apply_affine(draw, case, x)
    elif between == "identity":
        x = case.apply("cg.Identity()", x)
    _, c, h, w = case.shape(x)
    return case.apply(draw_conv(draw, c, (h, w), valid=True), x)


def _pads_for(draw, size: int, out: int, kernel: int, stride: int, dilation: int):
    """(begin, end) padding that gives ``out`` positions, centred (as RepVGG does) or not; None if none does."""
    low = (out - 1) * stride + (kernel - 1) * dilation + 1 - size
    total = draw(st.integers(max(low, 0), max(low, 0) + stride - 1))
    if (size + total - (kernel - 1) * dilation - 1) // stride + 1 != out:
        return None
    begin = total // 2 if draw(st.integers(0, 4)) else draw(st.integers(0, total))
    return begin, total - begin


def block_branches(draw, case, x):
    """RepVGG: Add of parallel convolutions of x (each maybe with a BatchNorm), x itself and BatchNorm(x)."""
    _, c, h, w = case.shape(x)
    with_identity = draw(st.integers(0, 2)) == 0
    stride = 1 if with_identity else draw(st.sampled_from([1, 1, 2]))
    cout = c if with_identity else draw(st.integers(1, MAX_CHANNELS))
    dilation = 1 if with_identity and draw(st.booleans()) else draw(st.sampled_from([1, 2, 2, 3]))
    out = ((h - 1) // stride + 1, (w - 1) // stride + 1)
    summands = []
    for index in range(draw(st.integers(1 if with_identity else 2, 3))):
        d = dilation if draw(st.integers(0, 5)) else draw(st.integers(1, 3))
        kernel = _pair(draw, st.sampled_from([3, 3, 5, 2, 1] if index == 0 else [1, 1, 3, 2, 5]))
        pads = [_pads_for(draw, size, o, k, stride, d) for size, o, k in zip((h, w), out, _two(kernel))]
        if None in pads:
            continue
        (top, bottom), (left, right) = pads
        if top == bottom and left == right:
            padding = top if top == left else (top, left)
            if stride == 1 and (top, left) == tuple((k - 1) * d // 2 for k in _two(kernel)) and draw(st.booleans()):
                padding = "same"
        else:
            padding = (top, left, bottom, right)
        groups = draw(st.sampled_from([g for g in _divisors(c) if cout % g == 0]))
        text = _call("Conv2d", (c, cout, kernel), stride=(stride, 1), padding=(padding, 0), dilation=(d, 1),
                     groups=(groups, 1), bias=(draw(st.booleans()), True))
        branch = case.apply(text, x)
        if draw(st.booleans()):
            branch = case.apply(f"random_bn({cout}, rng)", branch)
        summands.append(branch)
    if with_identity:
        kind = draw(st.sampled_from(["x", "bn", "both"]))
        if kind != "bn":
            summands.append(x)
        if kind != "x":
            summands.append(case.apply(f"random_bn({c}, rng)", x))
        if draw(st.integers(0, 3)) == 0:                       # a summand from another source stays as it is
            summands.append(case.apply("cg.ReLU()", x))
    while len(summands) < 2:
        summands.append(summands[0] if summands else x)         # x + x: a value read twice
    return case.apply("cg.Add()", *draw(st.permutations(summands)))


def block_concat(draw, case, x):
    _, c, h, w = case.shape(x)
    parts = []
    for _ in range(draw(st.integers(2, 3))):
        kind = draw(st.sampled_from(["x", "conv", "conv", "bn", "maxpool"]))
        if kind == "x":
            parts.append(x)
        elif kind == "conv":
            parts.append(case.apply(draw_conv(draw, c, (h, w), cout=draw(st.integers(1, 4)), same=True), x))
        elif kind == "bn":
            parts.append(case.apply(f"random_bn({c}, rng)", x))
        else:
            parts.append(case.apply("cg.MaxPool2d(3, stride=1, padding=1)", x))
    return case.apply("cg.Concat(axis=1)", *parts)


def block_residual(draw, case, x):
    """x + f(x), x + x or x · x: a value read twice."""
    kind = draw(st.sampled_from(["residual", "residual", "twice", "square"]))
    if kind == "twice":
        return case.apply("cg.Add()", x, x)
    if kind == "square":
        return case.apply("cg.Mul()", x, x)
    _, c, h, w = case.shape(x)
    y = case.apply(draw_conv(draw, c, (h, w), cout=c, same=True), x)
    if draw(st.booleans()):
        y = block_simple(draw, case, y)
    return case.apply("cg.Add()", *((x, y) if draw(st.booleans()) else (y, x)))


def block_shared(draw, case, x):
    """One weight array used by two convolutions: the same layer applied twice, or a weight assigned to another."""
    _, c, h, w = case.shape(x)
    text = draw_conv(draw, c, (h, w), cout=c, same=True)
    layer = case.layer(text)
    first = case.apply(layer, x)
    kind = draw(st.sampled_from(["chain", "parallel", "assigned", "twice"]))
    if kind == "chain":
        between = block_simple(draw, case, first) if draw(st.booleans()) else first
        return case.apply(layer, between)
    if kind == "assigned":
        other = case.layer(text)
        case.run(f"{other}.weight = {layer}.weight")
        layer = other
    second = case.apply(layer, x if kind == "twice" else case.apply(f"random_bn({c}, rng)", x))   # twice: cse's case
    return case.apply(draw(st.sampled_from(["cg.Add()", "cg.Concat(axis=1)"])), first, second)


BLOCKS = [block_conv, block_conv, block_simple, block_simple, block_pool, block_norm_conv, block_norm_conv,
          block_pool_conv, block_pool_conv, block_conv_pair, block_conv_pair, block_branches, block_branches,
          block_branches, block_concat, block_residual, block_shared]


# --- the head: Linear layers --------------------------------------------------------------------------------------
def between_linears(draw, case, x):
    """Nothing, a non-linearity, or something foldable or movable; or a reshape that must not be moved."""
    rank, features = len(case.shape(x)), case.shape(x)[-1]
    kind = draw(st.sampled_from(["none", "none", "none", "activation", "dropout", "identity", "reshape", "regroup",
                                 "bn", "affine"]))
    if kind == "activation":
        return case.apply(draw_activation(draw), x)
    if kind in ("dropout", "identity"):
        return case.apply("cg.Dropout(0.5)" if kind == "dropout" else "cg.Identity()", x)
    if kind == "reshape":                                     # keeps the last axis: commute_reshape's case
        return case.apply(f"cg.Reshape(('N', 1, {features}))" if rank == 2 else "cg.Flatten(1, -2)", x)
    if kind == "regroup" and (rank > 2 or features % 2 == 0):  # changes the last axis: must not be moved
        return case.apply("cg.Flatten()" if rank > 2 else f"cg.Reshape(('N', 2, {features // 2}))", x)
    if kind == "bn":                                          # over axis 1: Linear's features only when 2-D
        return case.apply(f"random_bn({case.shape(x)[1]}, rng)", x)
    if kind == "affine":
        return apply_affine(draw, case, x)
    return x


def linear_chain(draw, case, x):
    """1-3 Linears over the last axis, with something or nothing between; widths that make bottlenecks (where
    folding would cost more); a square Linear sometimes applied twice (shared weights)."""
    shared = None
    for index in range(draw(st.integers(1, 3))):
        if index or draw(st.integers(0, 3)) == 0:
            x = between_linears(draw, case, x)
        features = case.shape(x)[-1]
        if shared is not None and case.scope[shared].attrs["in_features"] == features and draw(st.booleans()):
            x = case.apply(shared, x)
            continue
        width = draw(st.sampled_from([1, 2, 3, 4, 8, 12, 16, 24]))
        text = _call("Linear", (features, width), bias=(draw(st.booleans()), True))
        if width == features:
            shared = case.layer(text)
            x = case.apply(shared, x)
        else:
            x = case.apply(text, x)
    return x


def head(draw, case, x):
    """Nothing, or from (N, C, H, W) to Linear layers: Flatten, GlobalAvgPool2d + Flatten, Reshape, or none
    (Linear over the last axis of a 3-D or 4-D value)."""
    kind = draw(st.sampled_from(["none", "flatten", "gap", "reshape", "flatten_spatial", "last_axis"]))
    if kind == "none":
        return x
    if kind == "gap":
        x = case.apply("cg.Flatten()", case.apply("cg.GlobalAvgPool2d()", x))
    elif kind == "flatten":
        x = case.apply("cg.Flatten()", x)
    elif kind == "reshape":
        x = case.apply("cg.Reshape(('N', -1))", x)
    elif kind == "flatten_spatial":
        x = case.apply("cg.Flatten(start_dim=2)", x)
    return linear_chain(draw, case, x)


@st.composite
def cases(draw) -> Case:
    """A random graph of a few blocks (usually 1-6 layers) on a small input, then maybe Linear layers, with
    sometimes one or two extra outputs taken from the middle."""
    case = Case(draw(st.integers(0, 2 ** 16)))
    x = case.input((None, draw(st.integers(1, 4)), draw(st.integers(5, 12)), draw(st.integers(5, 12))))
    target = draw(st.integers(1, 4))
    while case.layer_count() < target:
        x = draw(st.sampled_from(BLOCKS))(draw, case, x)
    x = head(draw, case, x)
    middle = [v for v in case.produced if v != x]
    extra = draw(st.lists(st.sampled_from(middle), max_size=2, unique=True)) if middle else []
    case.run(f"g.output({', '.join([x, *extra])})")
    return case
