"""``cnngraph train MODEL``: train a built-in model or an ONNX file on digits (or an .npz of x, y), with a
progress bar, then write the trained model as ONNX and the loss/accuracy curves as a picture."""
from __future__ import annotations

import os

import numpy as np

from .errors import CnnGraphError

VALIDATION_SHARE = 0.2


def load_data(spec: str, seed: int):
    """(x, y), (xv, yv): digits, or an .npz with x and y (and optionally x_val, y_val); else 20% held out."""
    import cnngraph as cg

    if spec == "digits":
        x, y = cg.datasets.digits()
        xv = yv = None
    else:
        if not os.path.isfile(spec):
            raise CnnGraphError(f"{spec}: no such file (--data takes 'digits' or an .npz with arrays x and y)")
        with np.load(spec) as data:
            missing = {"x", "y"} - set(data.files)
            if missing:
                raise CnnGraphError(f"{spec}: missing arrays {sorted(missing)} (has {data.files})")
            x, y = data["x"].astype(np.float32), data["y"].astype(np.int64)
            xv, yv = (data["x_val"].astype(np.float32), data["y_val"].astype(np.int64)) if "x_val" in data.files \
                else (None, None)
    if xv is None:
        order = np.random.default_rng(seed).permutation(len(x))
        cut = len(x) - max(1, int(len(x) * VALIDATION_SHARE))
        (x, xv), (y, yv) = (x[order[:cut]], x[order[cut:]]), (y[order[:cut]], y[order[cut:]])
    return (x, y), (xv, yv)


def model_for(spec: str, x: np.ndarray, y: np.ndarray, seed: int):
    """A built-in model sized for the data (channels, image size, classes), or an ONNX file as it is."""
    import cnngraph as cg

    from .cli import load_model
    if spec in cg.models.MODELS:
        return cg.models.MODELS[spec](input_shape=(None, *x.shape[1:]), num_classes=int(y.max()) + 1, seed=seed)
    return load_model(spec)


def plot_history(history, path: str) -> str:
    """Draw the curves; returns what to print (a hint when matplotlib, the ``plot`` extra, is missing)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"not drawn: {path} needs matplotlib (pip install 'cnngraph[plot]')"
    epochs = range(1, len(history.loss) + 1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, history.loss, label="training")
    left.plot(epochs, history.val_loss, label="validation")
    left.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    right.plot(epochs, history.accuracy, label="training")
    right.plot(epochs, history.val_accuracy, label="validation")
    right.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    for axes in (left, right):
        axes.legend()
        axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return f"wrote {path}"


def train(args) -> int:
    """Train MODEL with cross-entropy on digits (or --data FILE.npz with x (N, C, H, W) and integer y), print
    the loss and accuracy per epoch, write the trained inference graph as ONNX (-o) and the curves (--plot)."""
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn

    import cnngraph as cg

    from .cli import check_output, console
    if args.output:
        check_output(args.output, (".onnx",), "the trained model is written as ONNX")
    (x, y), (xv, yv) = load_data(args.data, args.seed)
    graph = model_for(args.model, x, y, args.seed)
    optimizer = cg.optim.OPTIMIZERS[args.optimizer](lr=args.lr or (0.05 if args.optimizer == "sgd" else 0.003),
                                                    **({"momentum": 0.9} if args.optimizer == "sgd" else {}))
    trainer = cg.Trainer(graph, optimizer=optimizer, seed=args.seed)
    console.print(f"training {graph.name} ({graph.param_count():,} parameters) on {len(x)} samples, "
                  f"validating on {len(xv)}: {optimizer}")
    with Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
                  TextColumn("accuracy {task.fields[accuracy]:.3f}"), console=console, transient=True) as progress:
        task = progress.add_task("train", total=args.epochs, epoch=1, loss=float("nan"), accuracy=float("nan"))

        def report(epoch, batch, batches, loss, accuracy):
            progress.update(task, completed=epoch + batch / batches, epoch=epoch + 1, loss=loss, accuracy=accuracy)
        history = trainer.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, validation=(xv, yv),
                              progress=report)
    for epoch in range(args.epochs):
        console.print(f"epoch {epoch + 1:3d}  loss {history.loss[epoch]:.4f}  accuracy {history.accuracy[epoch]:.3f}"
                      f"  validation loss {history.val_loss[epoch]:.4f}  accuracy {history.val_accuracy[epoch]:.3f}")
    if args.output:
        cg.export_onnx(trainer.graph, args.output)
        console.print(f"wrote {args.output}")
    if args.plot:
        console.print(escape(plot_history(history, args.plot)))
    return 0


def add_parser(command, count) -> None:
    """The train command's arguments (``command`` and ``count`` are cli.build_parser's helpers)."""
    p = command("train", train, "train a model on digits or an .npz, write it as ONNX",
                "cnngraph train seed_m1 --epochs 10 -o m1.onnx --plot curves.png")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--data", default="digits", help="'digits' (default, shipped) or FILE.npz with x and y")
    p.add_argument("--epochs", type=count, default=10)
    p.add_argument("--batch-size", type=count, default=32)
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="sgd")
    p.add_argument("--lr", type=float, help="learning rate (default 0.05 for SGD with momentum 0.9, 0.003 for Adam)")
    p.add_argument("--seed", type=int, default=0, help="weights, shuffling, Dropout masks and the validation split")
    p.add_argument("-o", "--output", metavar="OUT.onnx", help="write the trained model here")
    p.add_argument("--plot", metavar="FILE.png", help="draw the loss and accuracy curves here (needs matplotlib)")


def demo_training(console, epochs: int = 8) -> None:
    """The demo's last section: the seed's three networks trained on digits with one budget, M3 again with its
    own learning rate, then the trained M2 folded into M3's shape (the full experiment, over seeds, budgets and
    a learning-rate grid, is examples/seed_training.py)."""
    from rich.table import Table

    import cnngraph as cg
    x, y = cg.datasets.digits()
    order = np.random.default_rng(0).permutation(len(x))
    train_idx, valid_idx = order[:1347], order[1347:]
    table = Table(title=f"trained on the 8×8 digits: {epochs} epochs, Adam with a cosine schedule, batch 64")
    for column in ("model", "parameters", "learning rate", "validation accuracy"):
        table.add_column(column, justify="left" if column == "model" else "right")
    trained = {}
    for name, lr in (("seed_m1", 0.02), ("seed_m2", 0.02), ("seed_m3", 0.02), ("seed_m3", 1.0)):
        graph = cg.models.MODELS[name](input_shape=(None, 1, 8, 8), num_classes=10)
        optimizer = cg.optim.Adam(lr=lr)
        trainer = cg.Trainer(graph, optimizer=optimizer, scheduler=cg.optim.CosineAnnealingLR(optimizer, epochs))
        history = trainer.fit(x[train_idx], y[train_idx], epochs=epochs, batch_size=64,
                              validation=(x[valid_idx], y[valid_idx]))
        trained.setdefault(name, trainer.graph)
        label = name if lr == 0.02 else f"{name}, its own rate"
        table.add_row(label, f"{graph.param_count():,}", f"{lr:g}", f"{history.val_accuracy[-1]:.3f}")
    folded = cg.optimize(trained["seed_m2"])
    before, after = cg.run(trained["seed_m2"], x[valid_idx]), cg.run(folded, x[valid_idx])
    same = float(np.mean(before.argmax(1) == after.argmax(1)))
    accuracy = float(np.mean(after.argmax(1) == y[valid_idx]))
    table.add_row("seed_m2 trained, then folded", f"{folded.param_count():,}", "", f"{accuracy:.3f}")
    console.print()
    console.print(table)
    console.print(f"Trained, M1's ReLU earns its keep. M2 and M3 are the same set of functions: the trained M2 folds "
                  f"into M3's shape with {same:.0%} of its predictions unchanged, so an M3 that good exists. M3 "
                  f"trained directly lags at M2's learning rate because its 25 window averages are nearly "
                  f"collinear and gradient descent crawls: with its own rate it closes most of the gap, and "
                  f"longer training narrows it further; M3 is then still the one with the higher training loss, "
                  f"so the rest is optimization too (examples/seed_training.py).")
