"""Small data sets shipped inside the package, so that training needs no download and no extra dependency."""
from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8×8 handwritten digits of UCI (scikit-learn's ``load_digits``, made into digits.npz by
    make_digits.py beside this file): x float32 (1797, 1, 8, 8) in [0, 1] (grey levels 0..16 divided by 16),
    y int64 labels 0..9."""
    with np.load(HERE / "digits.npz") as data:
        images, labels = data["images"], data["labels"]
    return (images.astype(np.float32) / 16.0)[:, None], labels.astype(np.int64)


__all__ = ["digits"]
