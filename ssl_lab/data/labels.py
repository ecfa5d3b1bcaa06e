"""Which training examples keep their labels for transfer.

The subset depends only on the labels and the seed, never on the pretext or downstream choice, so
every pretext task is compared on exactly the same labelled examples.
"""

import hashlib

import numpy as np

from ssl_lab.errors import SslLabError


def select_labelled(
    labels: np.ndarray,
    labels_per_class: int | None = None,
    label_fraction: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Sorted indices of a stratified labelled subset of ``labels`` (all indices when no limit)."""
    labels = np.asarray(labels)
    if labels_per_class is not None and label_fraction is not None:
        raise SslLabError("set data.labels_per_class or data.label_fraction, not both")
    classes, counts = np.unique(labels, return_counts=True)
    if labels_per_class is not None:
        if labels_per_class < 1:
            raise SslLabError(f"data.labels_per_class={labels_per_class}: must be at least 1")
        if labels_per_class > counts.min():
            raise SslLabError(
                f"data.labels_per_class={labels_per_class}: larger than the smallest class "
                f"(class {classes[counts.argmin()]} has {counts.min()} training examples)"
            )
    if label_fraction is not None and not 0.0 < label_fraction <= 1.0:
        raise SslLabError(f"data.label_fraction={label_fraction}: must be in (0, 1]")
    if labels_per_class is None and label_fraction is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    chosen = []
    for cls, count in zip(classes, counts):
        members = np.flatnonzero(labels == cls)
        take = (
            labels_per_class
            if labels_per_class is not None
            else max(1, round(label_fraction * count))
        )
        chosen.append(rng.permutation(members)[:take])
    return np.sort(np.concatenate(chosen))


def subset_digest(indices: np.ndarray) -> str:
    """A short fingerprint of a labelled subset, for metrics.json: runs that share it trained on
    the same labelled examples."""
    return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:12]
