"""cg.lint: what a reviewer would point out in a network, without changing it.

The main finding is the question this project grew from: a chain of weighted layers (Conv2d, Linear) with no
non-linearity between them is one linear map. Between two such layers only linear ops may stand (Flatten,
BatchNorm, average pooling, Identity, ...); the chain's rank is at most its narrowest width. Other findings:
an idempotent activation applied twice, Dropout or Identity left in an inference graph.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import sole_reader


@dataclass(frozen=True)
class Finding:
    kind: str                # "linear-chain", "double-activation", "dropout", "identity"
    nodes: tuple
    message: str

    def __str__(self) -> str:
        return self.message


def _describe(node) -> str:
    summary = node.layer.summary({**node.attrs, "stride": (1, 1)}) if node.op == "Conv2d" else node.layer.summary(node.attrs)
    return f"{node.name} ({node.op} {summary})"


def _width(node) -> int:
    return node.attrs["out_features"] if node.op == "Linear" else node.attrs["out_channels"]


def _next_weighted(graph, node):
    """The weighted layer reached from ``node`` through linear ops only, each value read once; else None."""
    current = node
    while True:
        reader, _ = sole_reader(graph, current.name)
        if reader is None or not reader.layer.linear or len(reader.inputs) != 1:
            return None
        if reader.layer.weighted:
            return reader
        current = reader


def _linear_chains(graph):
    starts = {}
    for node in graph.layers():
        if node.layer.weighted and not node.attrs.get("activation"):
            following = _next_weighted(graph, node)
            if following is not None:
                starts[following.name] = node
    chains = []
    heads = {n.name for n in starts.values()} - set(starts)
    for head in heads:
        chain = [graph.node(head)]
        while not chain[-1].attrs.get("activation"):
            following = _next_weighted(graph, chain[-1])
            if following is None:
                break
            chain.append(following)
        chains.append(chain)
    return sorted(chains, key=lambda c: graph.topo_order().index(c[0].name))


def _chain_finding(chain) -> Finding:
    first, last = chain[0], chain[-1]
    rank = min(_width(n) for n in chain[:-1])
    if all(n.op == "Linear" for n in chain):
        single = f"a single Linear({first.attrs['in_features']}→{last.attrs['out_features']})"
    else:
        single = _single_conv(chain) or "a single linear layer"
    message = (f"{' → '.join(_describe(n) for n in chain)}: no non-linearity between them; together they are "
               f"one linear map of rank ≤ {rank}, equivalent to {single}")
    return Finding("linear-chain", tuple(n.name for n in chain), message)


def _single_conv(chain) -> str | None:
    """"a single Conv2d(c→o, K×K)" when the chain is directly connected, unpadded convolutions after the first."""
    if any(n.op != "Conv2d" for n in chain) or any(b.inputs[0] != a.name for a, b in zip(chain, chain[1:])) \
            or any(any(n.attrs["pads"]) or n.attrs["dilation"] != (1, 1) for n in chain[1:]) \
            or chain[0].attrs["dilation"] != (1, 1):
        return None
    kernel, stride = list(chain[0].attrs["kernel_size"]), list(chain[0].attrs["stride"])
    for node in chain[1:]:
        for axis in range(2):
            kernel[axis] += (node.attrs["kernel_size"][axis] - 1) * stride[axis]
            stride[axis] *= node.attrs["stride"][axis]
    return (f"a single Conv2d({chain[0].attrs['in_channels']}→{chain[-1].attrs['out_channels']}, "
            f"{kernel[0]}×{kernel[1]})")


def lint(graph) -> list[Finding]:
    findings = [_chain_finding(chain) for chain in _linear_chains(graph)]
    for node in graph.layers():
        if node.layer.idempotent and graph.node(node.inputs[0]).op == node.op:
            findings.append(Finding("double-activation", (node.inputs[0], node.name),
                                    f"{node.name} ({node.op}) is applied right after {node.inputs[0]} ({node.op}): "
                                    f"the second one changes nothing"))
        elif node.layer.inference_identity:
            summary = node.layer.summary(node.attrs)
            findings.append(Finding(node.op.lower(), (node.name,), f"{node.name} ({node.op}{' ' + summary if summary else ''})"
                                    f" is left in an inference graph: it does nothing at inference"))
    return findings
