import re

import numpy as np
import pytest

from ssl_lab.build import build
from ssl_lab.data.labels import select_labelled
from ssl_lab.errors import SslLabError


def test_labels_per_class_gives_exact_counts_per_class():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    chosen = select_labelled(labels, labels_per_class=7, seed=3)
    assert np.bincount(labels[chosen]).tolist() == [7, 7, 7, 7]
    assert len(set(chosen.tolist())) == 28


def test_label_fraction_is_stratified():
    labels = np.repeat(np.arange(3), [10, 20, 40])
    chosen = select_labelled(labels, label_fraction=0.25, seed=0)
    assert np.bincount(labels[chosen]).tolist() == [2, 5, 10]  # round(2.5) = 2 (banker's), 5, 10


def test_same_seed_same_subset_other_seed_other_subset():
    labels = np.repeat(np.arange(5), 50)
    a = select_labelled(labels, labels_per_class=5, seed=0)
    assert np.array_equal(a, select_labelled(labels, labels_per_class=5, seed=0))
    assert not np.array_equal(a, select_labelled(labels, labels_per_class=5, seed=1))


def test_no_limit_keeps_every_label():
    assert select_labelled(np.array([0, 1, 1, 2])).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"labels_per_class": 0}, "must be at least 1"),
        ({"labels_per_class": 11}, "larger than the smallest class"),
        ({"label_fraction": 1.5}, "must be in (0, 1]"),
        ({"labels_per_class": 2, "label_fraction": 0.5}, "not both"),
    ],
)
def test_impossible_subsets_are_refused(kwargs, message):
    labels = np.repeat(np.arange(2), [10, 30])
    with pytest.raises(SslLabError, match=re.escape(message)):
        select_labelled(labels, **kwargs)


def _digits_subset(cfg):
    data = build(cfg, "data")
    data.setup()
    return data


def test_digits_subset_is_the_same_for_every_pretext_and_changes_with_seed(compose_cfg):
    rotation = _digits_subset(compose_cfg("pretext=rotation", "data.labels_per_class=10"))
    supervised = _digits_subset(
        compose_cfg("pretext=supervised", "downstream=finetune", "data.labels_per_class=10")
    )
    other_seed = _digits_subset(
        compose_cfg("pretext=rotation", "data.labels_per_class=10", "seed=1")
    )
    assert rotation.n_labels == 100
    labels = rotation.splits["train"].tensors[1][rotation.labelled_indices]
    assert labels.bincount().tolist() == [10] * 10
    assert np.array_equal(rotation.labelled_indices, supervised.labelled_indices)
    assert not np.array_equal(rotation.labelled_indices, other_seed.labelled_indices)
    # the split itself does not move with the seed: only the labelled subset does
    assert (
        rotation.splits["test"].tensors[1].tolist() == other_seed.splits["test"].tensors[1].tolist()
    )


def test_a_fixed_length_epoch_cycles_through_the_subset_evenly():
    from ssl_lab.data.in_memory import CyclingSampler

    indices = list(CyclingSampler(n=7, num_samples=30))
    counts = np.bincount(indices, minlength=7)
    assert len(indices) == 30 and counts.min() >= 4 and counts.max() <= 5
    assert sorted(indices[:7]) == list(range(7))  # each pass is a permutation
