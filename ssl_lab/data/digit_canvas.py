"""Real handwritten digits pasted on larger canvases: a detection set that needs no download.

Each canvas holds ``min_digits`` to ``max_digits`` digits (fewer when no free place is found), at
random positions, each scaled so its longer side is a random ``digit_size`` in pixels, never
touching another (one pixel apart at least). A digit is first cut to its ink, scaled, and pixels
fainter than ``ink_threshold`` are cleared: its box is then exactly the rectangle around its ink.

The digits come from scikit-learn's 8x8 digits (``source: digits``, the default, no download) or
MNIST (``source: mnist``, ``mnist_path``). Train, val and test canvases are made from disjoint
digit images: MNIST's own test digits for test, and pools carved by ``split_seed`` for the rest
(all three carved for scikit-learn's digits). Canvases are fixed by ``split_seed`` too, so every
run sees the same ones; ``digits_used[split]`` records which digit images each split drew.
"""

import numpy as np
import torch
import torch.nn.functional as F

from ssl_lab.data.detection import Annotated, DetectionDataModule
from ssl_lab.data.in_memory import carve_splits
from ssl_lab.errors import SslLabError

SOURCES = ("digits", "mnist")
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}  # each split's canvases: their own stream
PLACEMENT_TRIES = 50  # random positions tried per digit before the canvas keeps fewer


def load_digits_source(source: str, mnist_path: str) -> dict[str, np.ndarray]:
    """``x`` (N, H, W) float in [0, 1] and ``y``; ``x_test``/``y_test`` when the source has its
    own test digits."""
    if source == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return {"x": digits.images.astype(np.float32) / 16.0, "y": digits.target}
    if source == "mnist":
        try:
            with np.load(mnist_path) as f:
                arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        except (OSError, KeyError, ValueError) as err:
            raise SslLabError(f"data.mnist_path={mnist_path}: cannot read MNIST: {err}") from err
        return {
            "x": arrays["x_train"].astype(np.float32) / 255.0,
            "y": arrays["y_train"],
            "x_test": arrays["x_test"].astype(np.float32) / 255.0,
            "y_test": arrays["y_test"],
        }
    raise SslLabError(f"data.source={source}: choose from {', '.join(SOURCES)}")


def ink_crop(image: np.ndarray, threshold: float) -> np.ndarray:
    """``image`` cut to the rectangle around its pixels above ``threshold``."""
    rows, cols = (
        np.flatnonzero((image > threshold).any(1)),
        np.flatnonzero((image > threshold).any(0)),
    )
    return image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def scaled_digit(image: np.ndarray, side: int, threshold: float) -> np.ndarray:
    """The digit cut to its ink, scaled so its longer side is ``side`` pixels (aspect kept),
    pixels at or below ``threshold`` cleared, and cut to its ink again: every border row and
    column of the result holds ink."""
    digit = ink_crop(image, threshold)
    h, w = digit.shape
    scale = side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    scaled = F.interpolate(
        torch.from_numpy(np.ascontiguousarray(digit))[None, None],
        size=size,
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )[0, 0].numpy()
    scaled = np.where(scaled > threshold, np.minimum(scaled, 1.0), 0.0).astype(np.float32)
    if not (scaled > 0).any():  # a stroke too thin to survive: keep its brightest pixel
        scaled.flat[int(np.argmax(scaled))] = 1.0
    return ink_crop(scaled, 0.0)


def _apart(box: tuple[int, int, int, int], others: list[tuple[int, int, int, int]]) -> bool:
    """Whether ``box`` keeps at least one pixel between itself and every one of ``others``."""
    x0, y0, x1, y1 = box
    return all(x0 > b[2] or b[0] > x1 or y0 > b[3] or b[1] > y1 for b in others)


def make_canvases(
    digits: np.ndarray,
    labels: np.ndarray,
    count: int,
    size: int,
    digits_per_canvas: tuple[int, int],
    digit_size: tuple[int, int],
    threshold: float,
    rng: np.random.Generator,
) -> tuple[Annotated, set[int]]:
    """``count`` canvases of ``size`` x ``size`` from ``digits``; the indices of those used."""
    images = np.zeros((count, 1, size, size), dtype=np.float32)
    all_boxes, all_classes, used = [], [], set()
    for n in range(count):
        boxes: list[tuple[int, int, int, int]] = []
        classes = []
        for _ in range(rng.integers(digits_per_canvas[0], digits_per_canvas[1] + 1)):
            index = int(rng.integers(len(digits)))
            side = int(rng.integers(digit_size[0], digit_size[1] + 1))
            patch = scaled_digit(digits[index], side, threshold)
            h, w = patch.shape
            for _ in range(PLACEMENT_TRIES):
                top, left = int(rng.integers(size - h + 1)), int(rng.integers(size - w + 1))
                box = (left, top, left + w, top + h)
                if _apart(box, boxes):
                    break
            else:
                continue
            images[n, 0, top : top + h, left : left + w] = patch
            boxes.append(box)
            classes.append(int(labels[index]))
            used.add(index)
        all_boxes.append(np.array(boxes, dtype=np.float32).reshape(-1, 4))
        all_classes.append(np.array(classes, dtype=np.int64))
    return Annotated(images, all_boxes, all_classes), used


class DigitCanvasDataModule(DetectionDataModule):
    def __init__(
        self,
        source: str = "digits",
        mnist_path: str = "mnist.npz",
        canvases: dict[str, int] | None = None,
        digits_per_canvas: tuple[int, int] = (1, 5),
        digit_size: tuple[int, int] = (12, 28),
        ink_threshold: float = 0.2,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if source not in SOURCES:
            raise SslLabError(f"data.source={source}: choose from {', '.join(SOURCES)}")
        self.source, self.mnist_path = source, mnist_path
        self.canvases = dict(canvases or {"train": 1000, "val": 100, "test": 200})
        self.digits_per_canvas = (int(digits_per_canvas[0]), int(digits_per_canvas[1]))
        self.digit_size = (int(digit_size[0]), int(digit_size[1]))
        self.ink_threshold = ink_threshold
        self.digits_used: dict[str, set[int]] = {}  # indices into each split's digit pool source

    def annotated_splits(self) -> dict[str, Annotated]:
        arrays = load_digits_source(self.source, self.mnist_path)
        x, y = arrays["x"], arrays["y"]
        carve = {"val": self.val_fraction}
        if "x_test" not in arrays:
            carve = {"test": self.test_fraction, **carve}
        pools = {s: i.numpy() for s, i in carve_splits(len(x), carve, self.split_seed).items()}
        sources = {s: (x[i], y[i], i) for s, i in pools.items()}
        if "x_test" in arrays:  # offset, so the used indices of all splits share one numbering
            offset = np.arange(len(x), len(x) + len(arrays["x_test"]))
            sources["test"] = (arrays["x_test"], arrays["y_test"], offset)
        parts = {}
        for split in ("train", "val", "test"):
            digits, labels, ids = sources[split]
            rng = np.random.default_rng([self.split_seed, SPLIT_STREAMS[split]])
            parts[split], used = make_canvases(
                digits,
                labels,
                self.canvases[split],
                self.size,
                self.digits_per_canvas,
                self.digit_size,
                self.ink_threshold,
                rng,
            )
            self.digits_used[split] = {int(ids[i]) for i in used}
        return parts
