"""What a pass did and did not do, as data: a Rewrite (rule, nodes before -> nodes after) or a Refusal (rule,
nodes, reason). Passes produce them; the report, the command line and the pictures read their fields, and
``str()`` here is the one place they become text.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NodeRef:
    """A node as it was when the record was made (the node itself may be gone or redefined since)."""
    name: str
    op: str                  # with a fused activation: "Conv2d+ReLU"
    summary: str = ""        # the op's own summary ("3→10, 5×5"), kept for nodes a rewrite produced

    @classmethod
    def of(cls, node, summary: bool = False) -> NodeRef:
        fused = node.attrs.get("activation")
        op = f"{node.op}+{fused['op']}" if fused else node.op
        return cls(node.name, op, node.layer.summary(node.attrs) if summary else "")

    def __str__(self) -> str:
        return f"{self.name} ({self.op}{' ' + self.summary if self.summary else ''})"


@dataclass(frozen=True)
class Rewrite:
    """``before``: the nodes the rule matched, as they were; ``after``: the nodes that compute their values
    now (empty when the values are simply read from elsewhere, e.g. an Identity removed)."""
    rule: str
    before: tuple[NodeRef, ...]
    after: tuple[NodeRef, ...] = ()
    detail: str = ""

    def __str__(self) -> str:
        before = " + ".join(map(str, self.before))
        text = f"{before} -> {' + '.join(map(str, self.after))}" if self.after else f"removed {before}" if before else ""
        return f"{self.rule}: " + ": ".join(part for part in (text, self.detail) if part)


@dataclass(frozen=True)
class Refusal:
    """A match whose check said no, and why (so a report can say why a fusion did not happen)."""
    rule: str
    nodes: tuple[NodeRef, ...]
    reason: str

    def __str__(self) -> str:
        nodes = " + ".join(map(str, self.nodes))
        return f"{self.rule}: " + (f"{nodes} not rewritten: {self.reason}" if nodes else self.reason)


def as_rewrite(entry, rule: str) -> Rewrite:
    """A record from a pass; a plain string (a pass written before records existed) becomes its detail."""
    return entry if isinstance(entry, Rewrite) else Rewrite(rule, (), (), str(entry))


def as_refusal(entry, rule: str) -> Refusal:
    return entry if isinstance(entry, Refusal) else Refusal(rule, (), str(entry))
