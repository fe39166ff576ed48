"""The ``cnngraph`` command. MODEL is a path to an .onnx file or the name of a built-in model.

    cnngraph demo                                 the story: lint, optimize, run in both backends, export, draw
    cnngraph summary MODEL                        a layer table: shapes, parameters, MACs
    cnngraph optimize MODEL -o OUT.onnx           optimize, write the model, print the per-pass report
    cnngraph lint MODEL                           findings; exit status 1 when there are any
    cnngraph run MODEL [--input X.npy] [-o Y.npy] run on random or given input
    cnngraph draw MODEL -o FILE.{dot,svg,png}     the layer graph as a picture
    cnngraph bench MODEL                          NumPy backend and onnxruntime, before and after optimizing
    cnngraph train MODEL [-o OUT.onnx]            train on digits, write the trained model and its curves

Errors print one line on stderr and exit with status 2 (``--debug`` shows the traceback).
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import CnnGraphError

console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)


class UsageError(CnnGraphError):
    """A bad option or argument."""


# --- models ----------------------------------------------------------------------------------------------------
def load_model(spec: str):
    """A Graph from an .onnx path or a built-in model's name."""
    import cnngraph as cg

    if os.path.exists(spec) or spec.endswith(".onnx"):
        if not os.path.isfile(spec):
            raise CnnGraphError(f"{spec}: no such file")
        return cg.load_onnx(spec)
    if spec in cg.models.MODELS:
        return cg.models.MODELS[spec]()
    raise UsageError(f"unknown model {spec!r}: not an .onnx file and not a built-in model "
                     f"({', '.join(sorted(cg.models.MODELS))})")


def random_inputs(graph, batch: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal([d if isinstance(d, int) else batch for d in graph.type_of(name).shape])
            .astype(np.float32) for name in graph.inputs]


def as_tuple(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)


def check_output(path: str, suffixes: tuple[str, ...], written_as: str) -> None:
    """Refuse, before any work, an output file whose suffix hides what is written or whose folder is missing."""
    if os.path.splitext(path)[1].lower() not in suffixes:
        raise UsageError(f"cannot write {path}: {written_as}, so the file must end in {', '.join(suffixes)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"cannot write {path}: the folder {folder} does not exist")


# --- commands --------------------------------------------------------------------------------------------------
def summary(args) -> int:
    """A layer table like torchinfo's: name, op, output shape, parameters, MACs (multiply-accumulates per
    sample, not FLOPs: a MAC is two FLOPs); totals at the bottom."""
    from .draw import op_label
    from .shapes import format_shape

    graph = load_model(args.model)
    table = Table(title=f"{graph.name}: inputs " + ", ".join(f"{n} {format_shape(graph.type_of(n).shape)}"
                                                             for n in graph.inputs))
    for column, justify in (("layer", "left"), ("op", "left"), ("output shape", "left"), ("params", "right"),
                            ("MACs", "right")):
        table.add_column(column, justify=justify)
    for node in graph.layers():
        params = sum(int(a.size) for k, a in node.params.items() if k not in node.layer.buffers)
        macs = node.layer.macs(node.attrs, graph.operands(node), node.type)
        table.add_row(node.name, op_label(node), format_shape(node.shape), f"{params:,}", f"{macs:,}")
    table.add_section()
    table.add_row("total", f"{len(graph.layers())} layers", "", f"{graph.param_count():,}", f"{graph.macs():,}")
    console.print(table)
    return 0


def optimize(args) -> int:
    """Optimize MODEL, write the result as ONNX (atomically) and print what each pass did."""
    import cnngraph as cg

    check_output(args.output, (".onnx",), "the model is written as ONNX")
    graph = load_model(args.model)
    try:
        optimized = cg.optimize(graph, level=args.level, verify=args.verify, disable=args.disable)
    except ValueError as error:
        raise UsageError(str(error)) from None
    cg.export_onnx(optimized, args.output, opset=args.opset)
    print_report(optimized.report)
    if not optimized.report.runs:
        note = f" (level {args.level}: no pass ran, the model is unchanged)"
    else:
        note = " (every pass verified on random inputs)" if args.verify else ""
    console.print(f"{len(graph.layers())} -> {len(optimized.layers())} layers, MACs {graph.macs():,} -> "
                  f"{optimized.macs():,}, parameters {graph.param_count():,} -> {optimized.param_count():,}; "
                  f"wrote {args.output}{note}")
    return 0


def print_report(report) -> None:
    table = Table(title=f"optimization passes (level {report.level})")
    for column in ("pass", "round", "ms", "layers", "MACs", "params", "rewrites"):
        table.add_column(column, justify="left" if column == "pass" else "right")
    for r in report.runs:
        if r.changed or r.round == 1:
            table.add_row(r.name, str(r.round), f"{r.seconds * 1e3:.1f}", *(_change(a, b) for a, b in
                          zip(r.before, r.after)), str(len(r.rewrites)))
    console.print(table)
    for record in report.rewrites:
        console.print(f"  [green]done[/green]  {escape(str(record))}")
    for record in report.refusals:
        console.print(f"  [yellow]not done[/yellow]  {escape(str(record))}")


def _change(before: int, after: int) -> str:
    return f"{before:,}" if before == after else f"{before:,} -> {after:,}"


def lint(args) -> int:
    """Print what a reviewer would point out; exit status 1 when there is anything, so it can guard a CI."""
    import cnngraph as cg

    findings = cg.lint(load_model(args.model))
    for finding in findings:
        console.print(f"{args.model}: {finding.kind}: {finding}")
    if not findings:
        console.print(f"{args.model}: no findings")
    return 1 if findings else 0


def run(args) -> int:
    """Run MODEL on the array in --input (.npy) or on random input; print or save (-o, .npy) the outputs."""
    import cnngraph as cg

    graph = load_model(args.model)
    if args.output:                 # np.save for one output, np.savez (a zip of .npy files) for several
        several = len(graph.outputs) > 1
        check_output(args.output, (".npz",) if several else (".npy",),
                     f"{graph.name} has {len(graph.outputs)} output{'s' if several else ''}, saved by "
                     f"NumPy's {'savez' if several else 'save'}")
    if args.input:
        try:
            arrays = [np.load(args.input, allow_pickle=False)]
        except (OSError, ValueError) as error:
            raise CnnGraphError(f"{args.input}: cannot read it as a .npy array ({error})") from None
    else:
        arrays = random_inputs(graph, args.batch)
    outputs = as_tuple(cg.run(graph, *arrays, backend=args.backend))
    for name, array in zip(graph.outputs, outputs):
        values = ", ".join(f"{v:.6g}" for v in array.reshape(-1)[:6])
        console.print(f"{name}: shape {tuple(array.shape)}, first values [{values}{', …' if array.size > 6 else ''}]")
    if args.output:
        from .atomic import write_atomically
        buffer = io.BytesIO()
        np.save(buffer, outputs[0]) if len(outputs) == 1 else np.savez(buffer, **dict(zip(graph.outputs, outputs)))
        write_atomically(buffer.getvalue(), args.output)
        console.print(f"wrote {args.output}")
    return 0


def draw(args) -> int:
    """Draw the layer graph: DOT always, SVG/PNG through Graphviz's dot."""
    import cnngraph as cg

    from .draw import FORMATS, folded_notes, render, to_dot

    check_output(args.output, FORMATS, "a picture is written as DOT, SVG or PNG")
    graph = load_model(args.model)
    folded = {}
    if args.optimized:
        graph = cg.optimize(graph)
        folded = folded_notes(graph.report)
    render(to_dot(graph, folded), args.output)
    console.print(f"wrote {args.output} ({len(graph.layers())} layers)")
    return 0


def bench(args) -> int:
    """NumPy backend, onnxruntime on the original and onnxruntime on our optimized export: medians."""
    from rich.progress import Progress

    import cnngraph as cg
    from cnngraph.backends.benchmark import ort_session, time_block

    graph = load_model(args.model)
    arrays = random_inputs(graph, args.batch)
    feeds = dict(zip(graph.inputs, arrays))
    optimized = cg.optimize(graph)
    original_session, optimized_session = ort_session(cg.export_onnx(graph)), ort_session(cg.export_onnx(optimized))
    cases = [("NumPy backend", lambda: cg.run(graph, *arrays)),
             ("NumPy backend, optimized", lambda: cg.run(optimized, *arrays)),
             ("onnxruntime, original", lambda: original_session.run(None, feeds)),
             ("onnxruntime, our optimized export", lambda: optimized_session.run(None, feeds))]
    results = {}
    with Progress(transient=True, console=console) as progress:
        task = progress.add_task("timing", total=len(cases) * args.rounds)
        for _ in range(args.rounds):
            for name, action in cases:
                results.setdefault(name, []).append(time_block(action, args.repeats))
                progress.advance(task)
    table = Table(title=f"{graph.name}, batch {args.batch}: medians of {args.rounds} rounds × {args.repeats} runs")
    table.add_column("backend")
    table.add_column("ms", justify="right")
    table.add_column("vs onnxruntime original", justify="right")
    reference = statistics.median(results["onnxruntime, original"])
    for name, times in results.items():
        median = statistics.median(times)
        table.add_row(name, f"{median * 1e3:.2f}", f"{median / reference:.2f}×")
    console.print(table)
    return 0


def demo(args) -> int:
    from .demo_command import demo as run_demo
    return run_demo(args, console)


# --- the parser ------------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (status 2), like every other error."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _count(text: str) -> int:
    """An argparse type: a whole number, at least 1 (a batch size, a number of rounds or runs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnngraph", description="A small compiler for convolutional networks.",
                     epilog="MODEL is a path to an .onnx file or a built-in model: resnet18, seed_m2, lenet5, …")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    # --debug after the command too; SUPPRESS: a command without it keeps what was given before the command
    anywhere = argparse.ArgumentParser(add_help=False)
    anywhere.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")

    def command(name, handler, help_text, example):
        p = commands.add_parser(name, help=help_text, description=handler.__doc__, epilog=f"example: {example}",
                                parents=[anywhere])
        p.set_defaults(handler=handler)
        return p

    p = command("demo", demo, "the main job: lint, optimize, run and export the seed's networks and resnet18",
                "cnngraph demo")
    p.add_argument("--output-dir", default="cnngraph-demo", help="where files go (default: ./cnngraph-demo)")
    p = command("summary", summary, "a layer table: shapes, parameters, MACs", "cnngraph summary resnet18")
    p.add_argument("model", metavar="MODEL")
    from cnngraph.passes import PIPELINE
    p = command("optimize", optimize, "optimize and write an ONNX file",
                "cnngraph optimize model.onnx -o model.opt.onnx --level 3 --verify\npasses (level, name, what): "
                + "; ".join(f"{step.level} {step.name}: {step.doc}" for step in PIPELINE))
    p.add_argument("model", metavar="MODEL")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--level", type=int, default=2, choices=range(4), help="0 none, 1 cleanups, 2 (default) "
                   "fusions and folds that never grow the model, 3 also folds that cut MACs")
    p.add_argument("--verify", action="store_true", help="check every pass on random inputs")
    p.add_argument("--disable", nargs="+", default=[], metavar="PASS", help="passes not to run")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset to write (default 18)")
    p = command("lint", lint, "linear chains and other findings; exit status 1 when there are any",
                "cnngraph lint seed_m2")
    p.add_argument("model", metavar="MODEL")
    p = command("run", run, "run on random or given input", "cnngraph run resnet18 --batch 2 -o out.npy")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--input", metavar="FILE.npy", help="the input array (default: random, seeded)")
    p.add_argument("--batch", type=_count, default=1, help="batch size of the random input (default 1)")
    p.add_argument("--backend", choices=("numpy", "onnxruntime"), default="numpy")
    p.add_argument("-o", "--output", metavar="OUT.npy", help="save the output(s) here")
    p = command("draw", draw, "the layer graph as a picture (DOT, or SVG/PNG with Graphviz)",
                "cnngraph draw seed_m2 -o m2.svg --optimized")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.dot, FILE.svg or FILE.png")
    p.add_argument("--optimized", action="store_true", help="draw the optimized graph, folded layers marked")
    p = command("bench", bench, "time the NumPy backend and onnxruntime, before and after optimizing",
                "cnngraph bench resnet18 --batch 8")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--batch", type=_count, default=1)
    p.add_argument("--rounds", type=_count, default=5, help="rounds over the four cases (default 5)")
    p.add_argument("--repeats", type=_count, default=5, help="timed runs per case and round (default 5)")
    from .train_command import add_parser as add_train_parser
    add_train_parser(command, _count)
    return parser


def main(argv=None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except (CnnGraphError, OSError) as error:
        if args is not None and args.debug:      # a usage error stays one line: its traceback is argparse's
            raise
        print(f"cnngraph: error: {_one_line(error)}", file=sys.stderr)
        return 2


def _one_line(error) -> str:
    if isinstance(error, OSError) and error.filename and error.strerror:     # no "[Errno 2]"
        return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split("\n")[0].split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
