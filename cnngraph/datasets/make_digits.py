"""Make digits.npz from scikit-learn's bundled copy of the UCI handwritten digits (run once; scikit-learn is
not a dependency of cnngraph: install it in a throwaway environment).

    python -m venv /tmp/sk && /tmp/sk/bin/pip install scikit-learn numpy
    /tmp/sk/bin/python cnngraph/datasets/make_digits.py

The file holds the 1,797 images as uint8 grey levels 0..16 (8×8) and their labels 0..9, in scikit-learn's
order; cnngraph.datasets.digits() scales them to [0, 1].
"""
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

digits = load_digits()
images = digits.images.astype(np.uint8)
assert images.shape == (1797, 8, 8) and images.max() == 16 and np.array_equal(images, digits.images)
np.savez_compressed(Path(__file__).with_name("digits.npz"), images=images, labels=digits.target.astype(np.uint8))
