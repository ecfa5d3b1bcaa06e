"""scikit-learn's 8x8 handwritten digits (1,797 images): ships with a dependency, so the demo
and the tests need no download."""

import numpy as np
from sklearn.datasets import load_digits

from ssl_lab.data.images import InMemoryImageDataModule


class DigitsDataModule(InMemoryImageDataModule):
    def load_arrays(self) -> dict[str, np.ndarray]:
        digits = load_digits()
        return {"x_train": digits.images.astype(np.float32) / 16.0, "y_train": digits.target}
