"""Lower adaptive pools whose windows tile the input to the plain pools the other passes know (level 1).

Along an axis of n cells pooled to m, adaptive window i is [floor(i·n/m), ceil((i+1)·n/m)); when m divides n
that is [i·k, (i+1)·k) with k = n/m: the windows of a pool with kernel = stride = k and no padding, whose
average divides by k on every window, as the adaptive one does. So
    AdaptiveAvgPool (every m divides its n) = AvgPool(kernel = stride = n/m), and with every m = 1 (2-D)
    = GlobalAvgPool2d; the same for the maximum (GlobalMaxPool2d).
This is how PyTorch's exporters write them, so a model built in Python and the same model imported from ONNX
end in one form, which the folding passes (fold_conv, fold_linear) then read. Other sizes keep the adaptive op.
"""
from __future__ import annotations

from .rules import rule, rule_pass


@rule(anchor=lambda node: node.op.startswith("Adaptive") and node.op.endswith(("Pool1d", "Pool2d", "Pool3d")))
def adaptive_to_plain_pool(m):
    """Adaptive{Avg,Max}Pool{n}d(x) -> {Avg,Max}Pool{n}d(x, kernel = stride = in/out), or a global pool"""
    node = m.node
    sizes, outs = m.graph.type_of(node.inputs[0]).shape[2:], node.type.shape[2:]
    if any(s % o for s, o in zip(sizes, outs)):
        return m.refuse(f"output size {list(outs)} does not divide the input size {list(sizes)}")
    maximum = node.layer.maximum
    if len(outs) == 2 and all(o == 1 for o in outs):
        m.graph.replace(node.name, "GlobalMaxPool2d" if maximum else "GlobalAvgPool2d", node.inputs, {})
        return m.rewrote([node], [node.name])
    kernel = tuple(s // o for s, o in zip(sizes, outs))
    attrs = dict(kernel_size=kernel, stride=kernel, pads=(0,) * (2 * len(kernel)), dilation=(1,) * len(kernel),
                 ceil_mode=False)
    if not maximum:
        attrs["count_include_pad"] = True
    m.graph.replace(node.name, f"{'Max' if maximum else 'Avg'}Pool{len(kernel)}d", node.inputs, attrs)
    return m.rewrote([node], [node.name])


PASS = rule_pass("canon_adaptive_pool", 1, [adaptive_to_plain_pool],
                 "adaptive pools whose windows tile the input made plain or global pools")
