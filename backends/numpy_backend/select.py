"""The kernel of Where with a constant condition (cnngraph/layers/select.py): two broadcasting copies into the
output, no temporary."""
from __future__ import annotations

import numpy as np

from .kernel import kernel


@kernel("Where")
def make_where(ctx):
    mask = ctx.params["condition"] != 0

    def step(inputs, out):
        x, y = inputs
        np.copyto(out, y)                  # broadcast: other everywhere,
        np.copyto(out, x, where=mask)      # then input where the condition holds
        return out
    return step
