"""Images stored as arrays in one ``.npz`` file (``x_train``, ``y_train``, optionally ``x_test``,
``y_test``): the quickest way to bring your own image data, and how MNIST ships in shared data."""

from pathlib import Path

import numpy as np

from ssl_lab.data.images import InMemoryImageDataModule, channels_first
from ssl_lab.errors import SslLabError


class NpzDataModule(InMemoryImageDataModule):
    """``x_*`` are uint8 (0..255) or float in [0, 1]; the test split is the file's own when it
    has ``x_test``, else carved from train by ``split_seed``."""

    def __init__(self, path: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.path = Path(path).expanduser()

    def load_arrays(self) -> dict[str, np.ndarray]:
        if not self.path.is_file():
            raise SslLabError(f"data.path: no such file: {self.path}")
        with np.load(self.path) as npz:
            missing = {"x_train", "y_train"} - set(npz.files)
            if missing:
                raise SslLabError(
                    f"data.path: {self.path} lacks {', '.join(sorted(missing))} "
                    f"(has {', '.join(npz.files)})"
                )
            return {
                key: channels_first(npz[key]) if key.startswith("x_") else npz[key]
                for key in ("x_train", "y_train", "x_test", "y_test")
                if key in npz.files
            }
