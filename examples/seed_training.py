"""The seed question, trained: does a Conv layer without a ReLU behind it add anything once trained?

M1 = Conv3×3 -> ReLU -> Conv3×3, M2 = the same without the ReLU, M3 = one Conv5×5 (each then a global average),
trained on the 8×8 digits shipped with cnngraph with the same budget, over several seeds. M2 and M3 are the same
set of functions (affine maps of the image through a 5×5 window) and M1's ReLU makes it a two-layer network:
  1. with the same budget M1 does best; M2 beats M3 although it can express nothing more: gradient descent
     on M3's 26 correlated window features is ill-conditioned, and M2's extra factor speeds it up;
  2. cg.optimize folds the trained M2 into M3's shape with the same predictions: an M3 as good as M2 exists;
  3. M3 given four times the epochs narrows the gap: its parameters do adjust themselves, slowly.

    python examples/seed_training.py [--epochs N] [--seeds K] [--plot curves.png]
"""
import argparse

import numpy as np

import cnngraph as cg

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--seeds", type=int, default=3)
parser.add_argument("--plot", help="draw the validation accuracy per epoch here (needs matplotlib)")
args = parser.parse_args()

x, y = cg.datasets.digits()
order = np.random.default_rng(0).permutation(len(x))
train, valid = order[:1347], order[1347:]                      # 75% / 25%


def train_model(name: str, seed: int):
    graph = cg.models.MODELS[name](input_shape=(None, 1, 8, 8), num_classes=10, seed=seed)
    optimizer = cg.optim.Adam(lr=0.02)
    trainer = cg.Trainer(graph, optimizer=optimizer, scheduler=cg.optim.CosineAnnealingLR(optimizer, args.epochs),
                         seed=seed)
    history = trainer.fit(x[train], y[train], epochs=args.epochs, batch_size=64, validation=(x[valid], y[valid]))
    return trainer.graph, history


results, curves, trained_m2 = {}, {}, None
print(f"{'model':8} {'parameters':>10}  validation accuracy per seed ({args.epochs} epochs, Adam 0.02, cosine)")
for name in ("seed_m1", "seed_m2", "seed_m3"):
    accuracies = []
    for seed in range(args.seeds):
        graph, history = train_model(name, seed)
        accuracies.append(history.val_accuracy[-1])
        curves.setdefault(name, []).append(history.val_accuracy)
        if name == "seed_m2" and seed == 0:
            trained_m2 = graph
    results[name] = np.array(accuracies)
    print(f"{name:8} {graph.param_count():>10,}  {' '.join(f'{a:.3f}' for a in accuracies)}   "
          f"mean {results[name].mean():.3f} ± {results[name].std():.3f}")

m1, m2, m3 = (results[n] for n in ("seed_m1", "seed_m2", "seed_m3"))
print(f"same budget: M1 ahead of M2 by {m1.mean() - m2.mean():.3f}, M2 ahead of M3 by {m2.mean() - m3.mean():.3f}")
assert m1.mean() > max(m2.mean(), m3.mean()), "the ReLU should make M1 the better network"

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
print(f"trained M2 folded: {trained_m2.param_count():,} -> {folded.param_count():,} parameters (M3's shape), "
      f"{same:.0%} of predictions unchanged, accuracy {folded_accuracy:.3f}: an M3 that good exists")
assert same > 0.99

# M3 alone moves towards it, given time: the same training, four times the epochs.
args.epochs *= 4
_, history = train_model("seed_m3", 0)
print(f"M3 with {args.epochs} epochs: accuracy {history.val_accuracy[-1]:.3f} (M2 with {args.epochs // 4}: "
      f"{m2[0]:.3f})")

if args.plot:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(6, 3.5))
    for name, label in (("seed_m1", "M1: conv → ReLU → conv"), ("seed_m2", "M2: conv → conv"),
                        ("seed_m3", "M3: one 5×5 conv")):
        runs = np.array(curves[name])
        epochs = np.arange(1, runs.shape[1] + 1)
        axes.plot(epochs, runs.mean(0), label=label)
        axes.fill_between(epochs, runs.min(0), runs.max(0), alpha=0.2)
    axes.axhline(folded_accuracy, color="grey", linestyle=":", label="M2 trained, folded into M3's shape")
    axes.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0, 1),
             title=f"digits, {args.seeds} seeds (band: min to max), same budget")
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(args.plot, dpi=100)
    print(f"wrote {args.plot}")
