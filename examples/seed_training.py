"""The seed question, trained: does a Conv layer without a ReLU behind it add anything once trained?

M1 = Conv3×3 -> ReLU -> Conv3×3, M2 = the same without the ReLU, M3 = one Conv5×5 (each then a global average),
trained on the 8×8 digits shipped with cnngraph, over several seeds. M2 and M3 are the same set of functions
(an affine map of the 25 averages of 4×4 windows: for M3 a convex logistic regression) and M1's ReLU makes it
a two-layer network. Three budgets, Adam with a cosine schedule:
  1. 10 epochs, one learning rate for all (0.02): M1 > M2 > M3. M2 beats M3 although it can express nothing
     more: the 25 window averages are nearly collinear (condition number ~700), so gradient descent on M3
     crawls, and 0.02 suits M2 but is far too small for M3;
  2. 10 epochs, each model's learning rate picked from the same grid on a selection split: most of the M2-M3
     gap closes;
  3. 200 epochs, picked the same way: the gap narrows again but is still there, and M3's training loss is
     still above M2's although M3 can fit anything M2 fits: what is left is optimization, not expressive power.
M1 stays ahead at every budget. Then cg.optimize folds the trained M2 into M3's shape with the same
predictions: an M3 that good exists.

    python examples/seed_training.py [--seeds K] [--long-epochs N] [--plot curves.png]
    python examples/seed_training.py --tune      # re-pick the learning rates (slow: the grid at both budgets)
    python examples/seed_training.py --quick     # a few epochs, one seed: runs the code, asserts no claim
"""
import argparse

import numpy as np

import cnngraph as cg

MODELS = ("seed_m1", "seed_m2", "seed_m3")
GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)                       # Adam's learning rate, the same grid for all three
# Picked by --tune (seed 0, fit on 1,047 training digits, best accuracy on the other 300; ties: the smaller):
TUNED = {"short": {"seed_m1": 0.03, "seed_m2": 0.03, "seed_m3": 1.0},
         "long": {"seed_m1": 0.01, "seed_m2": 0.03, "seed_m3": 0.3}}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=10, help="the short budget")
parser.add_argument("--long-epochs", type=int, default=200, help="the long budget")
parser.add_argument("--seeds", type=int, default=3)
parser.add_argument("--tune", action="store_true", help="pick each model's learning rate from the grid first")
parser.add_argument("--quick", action="store_true", help="3 and 6 epochs, one seed: checks the code runs")
parser.add_argument("--plot", help="draw the validation accuracy per epoch here (needs matplotlib)")
args = parser.parse_args()
if args.quick:
    args.epochs, args.long_epochs, args.seeds = 3, 6, 1

x, y = cg.datasets.digits()
order = np.random.default_rng(0).permutation(len(x))
train, valid = order[:1347], order[1347:]                      # 75% / 25%; tuning never sees `valid`


def train_model(name: str, seed: int, epochs: int, lr: float, fit_on=train, check_on=valid):
    graph = cg.models.MODELS[name](input_shape=(None, 1, 8, 8), num_classes=10, seed=seed)
    optimizer = cg.optim.Adam(lr=lr)
    trainer = cg.Trainer(graph, optimizer=optimizer, scheduler=cg.optim.CosineAnnealingLR(optimizer, epochs),
                         seed=seed)
    history = trainer.fit(x[fit_on], y[fit_on], epochs=epochs, batch_size=64, validation=(x[check_on], y[check_on]))
    return trainer.graph, history


def tune(epochs: int) -> dict:
    picked = {}
    for name in MODELS:
        scores = [train_model(name, 0, epochs, lr, train[:1047], train[1047:])[1].val_accuracy[-1] for lr in GRID]
        picked[name] = GRID[int(np.argmax(scores))]
        print(f"  tune {epochs} epochs {name}: " + " ".join(f"{lr:g}:{s:.3f}" for lr, s in zip(GRID, scores)))
    return picked


if args.tune:
    TUNED = {"short": tune(args.epochs), "long": tune(args.long_epochs)}
    print(f"picked: {TUNED}")

budgets = [("same lr", args.epochs, {name: 0.02 for name in MODELS}),
           ("tuned lr", args.epochs, TUNED["short"]),
           ("tuned lr", args.long_epochs, TUNED["long"])]
results, train_losses, curves, trained_m2 = {}, {}, {}, None
print(f"validation accuracy on {len(valid)} digits, Adam with a cosine schedule, batch 64, {args.seeds} seed(s)")
print(f"{'model':8} {'parameters':>10}  {'budget':22} {'per seed':20} {'mean ± std':14} training loss")
for label, epochs, lrs in budgets:
    for name in MODELS:
        accuracies, losses = [], []
        for seed in range(args.seeds):
            graph, history = train_model(name, seed, epochs, lrs[name])
            accuracies.append(history.val_accuracy[-1])
            losses.append(history.loss[-1])
            curves.setdefault((label, epochs), {}).setdefault(name, []).append(history.val_accuracy)
            if name == "seed_m2" and seed == 0 and label == "same lr":
                trained_m2 = graph
        results[label, epochs, name] = a = np.array(accuracies)
        train_losses[label, epochs, name] = np.mean(losses)
        budget = f"{epochs} epochs, lr {lrs[name]:g}"
        print(f"{name:8} {graph.param_count():>10,}  {budget:22} {' '.join(f'{v:.3f}' for v in a):20} "
              f"{a.mean():.3f} ± {a.std():.3f}  {np.mean(losses):.3f}")

gaps = []
for label, epochs, _ in budgets:
    m1, m2, m3 = (results[label, epochs, n] for n in MODELS)
    gaps.append(m2.mean() - m3.mean())
    print(f"{label}, {epochs} epochs: M1 - M2 = {m1.mean() - m2.mean():+.3f}, M2 - M3 = {m2.mean() - m3.mean():+.3f} "
          f"(seeds' spread: M2 ± {m2.std():.3f}, M3 ± {m3.std():.3f})")
    if not args.quick:
        assert m1.mean() > max(m2.mean(), m3.mean()), "the ReLU should make M1 the better network"
if not args.quick:          # given its own learning rate, then time, M3 closes in on M2
    assert gaps[0] > 2 * gaps[1] and gaps[1] > gaps[2], f"the M2 - M3 gap should shrink: {gaps}"
    long_m2, long_m3 = (train_losses["tuned lr", args.long_epochs, n] for n in ("seed_m2", "seed_m3"))
    print(f"after {args.long_epochs} epochs M3's training loss is {long_m3:.3f}, M2's {long_m2:.3f}: M3 could fit "
          f"as well as M2 (it holds every M2), its optimizer has not got there yet")

# The trained M2 folds exactly into M3's shape: one 5×5 convolution, the same predictions.
folded = cg.optimize(trained_m2, verify=True)
convs = [n for n in folded.layers() if n.op == "Conv2d"]
shape_of_m3 = cg.models.seed_m3(input_shape=(None, 1, 8, 8))
assert len(convs) == 1 and convs[0].attrs["kernel_size"] == (5, 5)
assert folded.param_count() == shape_of_m3.param_count()
before, after = cg.run(trained_m2, x[valid]), cg.run(folded, x[valid])
assert np.allclose(before, after, rtol=1e-4, atol=1e-5 * np.abs(before).max())
same = float(np.mean(before.argmax(1) == after.argmax(1)))
folded_accuracy = float(np.mean(after.argmax(1) == y[valid]))
print(f"trained M2 (same lr, {args.epochs} epochs, seed 0) folded: {trained_m2.param_count():,} -> "
      f"{folded.param_count():,} parameters (M3's shape), {same:.0%} of predictions unchanged, "
      f"accuracy {folded_accuracy:.3f}: an M3 that good exists")
assert same > 0.99

if args.plot:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, panels = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    names = {"seed_m1": "M1: conv → ReLU → conv", "seed_m2": "M2: conv → conv", "seed_m3": "M3: one 5×5 conv"}
    for axes, (label, epochs, lrs) in zip(panels, (budgets[0], budgets[2])):
        for name in MODELS:
            runs = np.array(curves[label, epochs][name])
            steps = np.arange(1, runs.shape[1] + 1)
            axes.plot(steps, runs.mean(0), label=f"{names[name]} (lr {lrs[name]:g})")
            axes.fill_between(steps, runs.min(0), runs.max(0), alpha=0.2)
        axes.set(xlabel="epoch", ylim=(0, 1), title=f"{epochs} epochs, {label}")
        axes.legend(loc="lower right", fontsize=8)
        axes.grid(alpha=0.3)
    panels[0].axhline(folded_accuracy, color="grey", linestyle=":")
    panels[0].set_ylabel(f"validation accuracy ({args.seeds} seeds, band: min to max)")
    figure.tight_layout()
    figure.savefig(args.plot, dpi=100)
    print(f"wrote {args.plot}")
