"""Can a Conv layer work without a ReLU behind it? The question this project grew from, answered with code.

M1 = Conv3×3 -> ReLU -> Conv3×3, M2 = the same without the ReLU, M3 = one Conv5×5. A convolution runs fine
without an activation, but then two of them in a row are one linear map: M2 is exactly an M3.
"""
import numpy as np

import cnngraph as cg

m1, m2, m3 = cg.models.seed_m1(), cg.models.seed_m2(), cg.models.seed_m3()
rng = np.random.default_rng(0)
a, b = (rng.standard_normal((2, 3, 32, 32)).astype(np.float32) for _ in range(2))
zero = np.zeros_like(a)

# 1. The lint sees it: M2's two convolutions are one linear map; M1's ReLU makes it more than that.
findings = cg.lint(m2)
print("lint M2:", findings[0])
assert [f.kind for f in findings] == ["linear-chain"] and cg.lint(m1) == []

# 2. Linearity, measured: an affine map f has f(a + b) = f(a) + f(b) - f(0). M2 does, M1 does not.
def affine_gap(graph):
    lhs, rhs = cg.run(graph, a + b), cg.run(graph, a) + cg.run(graph, b) - cg.run(graph, zero)
    return float(np.max(np.abs(lhs - rhs)) / np.max(np.abs(lhs)))

print(f"relative affinity gap: M2 {affine_gap(m2):.1e}, M1 {affine_gap(m1):.1e}")
assert affine_gap(m2) < 1e-4 < affine_gap(m1)

# 3. The optimizer folds M2 into a network the size of M3, with M2's outputs.
folded = cg.optimize(m2, verify=True)
conv = [n for n in folded.layers() if n.op == "Conv2d"]
assert len(conv) == 1 and conv[0].attrs["kernel_size"] == (5, 5)
assert (folded.param_count(), folded.macs()) == (m3.param_count(), m3.macs())
assert np.allclose(cg.run(folded, a), cg.run(m2, a), rtol=1e-4, atol=1e-5)
print(f"M2 folded: {m2.param_count():,} -> {folded.param_count():,} parameters (M3 has {m3.param_count():,}), "
      f"{m2.macs():,} -> {folded.macs():,} MACs, same outputs")

# 4. M1 keeps both convolutions: its ReLU stops the fold (only the ReLU is fused into the first conv).
kept = cg.optimize(m1)
assert [n.op for n in kept.layers()].count("Conv2d") == 2
print("M1 keeps its two convolutions.")
print("Answer: yes, a Conv runs without a ReLU, but stacking such layers adds parameters and cost, not "
      "expressive power: without a non-linearity, depth collapses to one layer.")
