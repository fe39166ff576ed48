"""Pictures of graphs: DOT text always, SVG or PNG through Graphviz's ``dot`` when it is installed.

One box per layer (name, op, the main attributes), the value's shape on each edge; layers a pass fused or
folded are filled, with what they absorbed ("Conv2d+ReLU", "folded: L1 + L2").
"""
from __future__ import annotations

import os
import shutil
import subprocess

from .atomic import write_atomically
from .errors import CnnGraphError
from .graph import INPUT
from .shapes import format_shape

FORMATS = (".dot", ".svg", ".png")


def _quote(text: str) -> str:
    """A DOT string: quotes and backslashes escaped, newlines as DOT's centred line breaks."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _summary(node) -> str:
    return node.layer.summary(node.attrs)


def op_label(node) -> str:
    """The op as a reader sees it: a fused activation is part of it ("Conv2d+ReLU")."""
    fused = node.attrs.get("activation")
    return f"{node.op}+{fused['op']}" if fused else node.op


def folded_notes(report) -> dict[str, str]:
    """Node name -> "folded: a + b + c" for the nodes the passes made out of several layers, read from the
    report's records: a rewrite whose result is one node absorbed every node it matched (and what those had
    absorbed before)."""
    members: dict[str, list[str]] = {}
    for record in report.rewrites:
        if len(record.after) == 1:
            merged = [m for node in record.before for m in members.get(node.name, [node.name])]
            members[record.after[0].name] = list(dict.fromkeys(merged))
    return {name: "folded: " + " + ".join(parts) for name, parts in members.items() if len(parts) > 1}


def to_dot(graph, folded: dict[str, str] | None = None) -> str:
    """DOT text for ``graph``; ``folded`` maps a node name to a note on what was folded into it."""
    folded = folded or {}
    lines = [f"digraph {_quote(graph.name)} {{", "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica", fontsize=11];',
             '  edge [fontname="Helvetica", fontsize=9, color=gray40];']
    for node in graph.nodes:
        if node.op == INPUT:
            label = node.name + "\n" + format_shape(node.shape)
            lines.append(f"  {_quote(node.name)} [label={_quote(label)}, shape=oval, fillcolor=lightgray];")
            continue
        label = f"{node.name}\n{op_label(node)}"
        detail = _summary(node)
        if detail:
            label += f"\n{detail}"
        changed = node.attrs.get("activation") or node.name in folded
        if node.name in folded:
            label += f"\n{folded[node.name]}"
        fill = "palegreen" if changed else "white"
        lines.append(f"  {_quote(node.name)} [label={_quote(label)}, fillcolor={fill}];")
    for node in graph.nodes:
        for source in dict.fromkeys(node.inputs):
            shape = _quote(format_shape(graph.type_of(source).shape))
            lines.append(f"  {_quote(source)} -> {_quote(node.name)} [label={shape}];")
    for output in graph.outputs:
        sink, label = f"{output}/output", "output\n" + format_shape(graph.type_of(output).shape)
        lines.append(f"  {_quote(sink)} [label={_quote(label)}, shape=oval, fillcolor=lightgray];")
        lines.append(f"  {_quote(output)} -> {_quote(sink)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot_text: str, path) -> None:
    """Write ``dot_text`` to ``path`` as .dot, or through Graphviz as .svg/.png (atomically: a temporary file
    beside it, renamed at the end)."""
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise CnnGraphError(f"cannot draw to {path!r}: the file must end in {', '.join(FORMATS)}")
    if extension == ".dot":
        data = dot_text.encode()
    else:
        dot = shutil.which("dot")
        if dot is None:
            raise CnnGraphError(f"{extension[1:].upper()} needs Graphviz's 'dot' program, which is not installed "
                                f"(apt install graphviz, or brew install graphviz); -o FILE.dot works without it")
        completed = subprocess.run([dot, f"-T{extension[1:]}"], input=dot_text.encode(), capture_output=True,
                                   timeout=120)
        if completed.returncode != 0:
            raise CnnGraphError(f"dot failed: {completed.stderr.decode(errors='replace').strip()[:300]}")
        data = completed.stdout
    write_atomically(data, path)
