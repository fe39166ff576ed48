"""RepVGG, trained then folded: train-time branches, inference-time single convolutions.

Each block sums three parallel branches of its input, 3×3 conv + BatchNorm, 1×1 conv + BatchNorm and
BatchNorm alone (the identity), then a ReLU: the branches help training, and since each is linear they fold,
once trained, into one 3×3 convolution per block (cg.optimize: BatchNorm folds, then fold_branches).

    python examples/repvgg_training.py
"""
import numpy as np

import cnngraph as cg


def repvgg(width: int = 8, blocks: int = 2, seed: int = 0) -> cg.Graph:
    cg.manual_seed(seed)
    graph = cg.Graph("repvgg")
    h = graph.apply(cg.ReLU(), graph.apply(cg.Conv2d(1, width, 3, padding=1), graph.input("x", (None, 1, 8, 8)),
                                           name="stem"))
    for i in range(blocks):
        conv3 = graph.apply(cg.Conv2d(width, width, 3, padding=1, bias=False), h, name=f"block{i}.conv3x3")
        conv1 = graph.apply(cg.Conv2d(width, width, 1, bias=False), h, name=f"block{i}.conv1x1")
        branches = [graph.apply(cg.BatchNorm2d(width), conv3, name=f"block{i}.bn3x3"),
                    graph.apply(cg.BatchNorm2d(width), conv1, name=f"block{i}.bn1x1"),
                    graph.apply(cg.BatchNorm2d(width), h, name=f"block{i}.bn_identity")]
        h = graph.apply(cg.ReLU(), graph.apply(cg.Add(), *branches, name=f"block{i}.add"), name=f"block{i}.relu")
    pooled = graph.apply(cg.Flatten(), graph.apply(cg.GlobalAvgPool2d(), h, name="pool"), name="flatten")
    graph.output(graph.apply(cg.Linear(width, 10), pooled, name="fc"))
    return graph


x, y = cg.datasets.digits()
order = np.random.default_rng(0).permutation(len(x))
train, valid = order[:1347], order[1347:]
optimizer = cg.optim.Adam(lr=0.02)
trainer = cg.Trainer(repvgg(), optimizer=optimizer, scheduler=cg.optim.CosineAnnealingLR(optimizer, 8))
history = trainer.fit(x[train], y[train], epochs=8, batch_size=64, validation=(x[valid], y[valid]))
trained = trainer.graph
print(f"trained 8 epochs: validation accuracy {history.val_accuracy[-1]:.3f}")

folded = cg.optimize(trained, verify=True)
convs = [n for n in folded.layers() if n.op == "Conv2d"]
print(f"folded: {len(trained.layers())} layers ({[n.op for n in trained.layers()].count('Conv2d')} convolutions, "
      f"{[n.op for n in trained.layers()].count('BatchNorm2d')} BatchNorms) -> {len(folded.layers())} layers "
      f"({len(convs)} convolutions, ReLUs fused into them)")
assert len(convs) == 3 and all(n.attrs["kernel_size"] == (3, 3) for n in convs)
before, after = cg.run(trained, x[valid]), cg.run(folded, x[valid])
assert np.allclose(before, after, rtol=1e-4, atol=1e-5 * np.abs(before).max())
assert np.array_equal(before.argmax(1), after.argmax(1))
print(f"identical predictions on the {len(valid)} validation digits (largest difference "
      f"{np.abs(before - after).max():.1e})")
