import itertools

import pytest
import torch

from ssl_lab.backbones.small_cnn import SmallCNN
from ssl_lab.pretext.jigsaw import JigsawPuzzle, permutation_set


def _mean_pairwise_hamming(perms: torch.Tensor) -> float:
    distances = (perms[:, None, :] != perms[None, :, :]).sum(-1).float()
    upper = torch.triu(torch.ones_like(distances, dtype=torch.bool), diagonal=1)
    return distances[upper].mean().item()


def test_permutation_set_of_100_is_distinct_and_as_spread_as_the_papers():
    perms = permutation_set(100)
    assert perms.shape == (100, 9) and perms.dtype == torch.long
    assert len({tuple(p) for p in perms.tolist()}) == 100
    assert all(sorted(p) == list(range(9)) for p in perms.tolist())
    assert _mean_pairwise_hamming(perms) >= 8.0  # the paper's set of 100: 8.08


@pytest.mark.slow
def test_permutation_set_of_1000_keeps_a_high_mean_distance():
    perms = permutation_set(1000)
    assert len({tuple(p) for p in perms.tolist()}) == 1000
    assert _mean_pairwise_hamming(perms) >= 7.95


def test_permutation_set_is_deterministic_by_seed():
    assert torch.equal(permutation_set(30, seed=4), permutation_set(30, seed=4))
    assert not torch.equal(permutation_set(30, seed=4), permutation_set(30, seed=5))
    assert permutation_set(24, grid=2).shape == (24, 4)  # all 4! permutations of a 2x2 grid


def _labelled_image(channels: int, size: int = 30) -> torch.Tensor:
    """An image whose every 10x10 cell holds its own cell index, so tiles say where they came
    from."""
    cells = torch.arange(9, dtype=torch.float32).reshape(3, 3)
    image = cells.repeat_interleave(10, 0).repeat_interleave(10, 1)
    return image.expand(channels, size, size)


@pytest.mark.parametrize("channels", [1, 3])
def test_the_applied_permutation_is_recoverable_from_the_label(channels):
    task = JigsawPuzzle(feature_dim=8, num_permutations=50)
    tiles = task.cut_tiles(_labelled_image(channels)[None].repeat(4, 1, 1, 1))
    assert tiles.shape == (4, 9, channels, 8, 8)  # tile = 85% of a 10 px cell, rounded
    assert [t[0, 0, 0].item() for t in tiles[0]] == list(range(9))  # cut from their own cells
    for _ in range(5):
        labels = torch.randint(0, 50, (4,))
        order = task.permutations[labels]
        shuffled = tiles[torch.arange(4)[:, None], order]
        cell_of_each_position = shuffled[:, :, 0, 0, 0].long()
        assert torch.equal(cell_of_each_position, order)


def test_make_batch_shuffles_by_the_label_and_normalises_every_tile():
    torch.manual_seed(0)
    task = JigsawPuzzle(feature_dim=8, num_permutations=20)
    images = torch.rand(16, 3, 32, 32) * 5 + 2
    inputs, labels = task.make_batch((images,))
    assert inputs.shape == (16, 9, 3, 8, 8) and labels.shape == (16,)
    assert labels.min() >= 0 and labels.max() < 20
    means, stds = inputs.mean(dim=(2, 3, 4)), inputs.std(dim=(2, 3, 4))
    assert means.abs().max() < 1e-4 and (stds - 1).abs().max() < 1e-3


def test_tiles_jitter_inside_their_cells():
    task = JigsawPuzzle(feature_dim=8)
    image = torch.arange(32 * 32, dtype=torch.float32).reshape(1, 1, 32, 32).repeat(200, 1, 1, 1)
    corners = task.cut_tiles(image)[:, 4, 0, 0, 0]  # top-left pixel of the centre tile
    rows, cols = (corners // 32).long(), (corners % 32).long()
    assert rows.min() >= 10 and rows.max() <= 12 and cols.min() >= 10 and cols.max() <= 12
    assert len(set(zip(rows.tolist(), cols.tolist()))) == 9  # 3x3 offsets, all used


def test_head_sees_every_tile_through_the_shared_backbone():
    task = JigsawPuzzle(feature_dim=32, num_permutations=10)
    inputs, _ = task.make_batch((torch.randn(2, 1, 32, 32),))
    assert task(SmallCNN(1, (8, 16, 32)), inputs).shape == (2, 10)


def test_picture_reassembles_the_true_order():
    task = JigsawPuzzle(feature_dim=32, num_permutations=10)
    rows = task.picture(SmallCNN(1, (8, 16, 32)), (torch.randn(3, 1, 32, 32),))
    assert len(rows) == 3 and [caption for _, caption in rows[0]][2] == "true order"
    assert rows[0][0][0].shape == (1, 24, 24)


def test_the_2x2_grid_enumerates_all_permutations():
    perms = {tuple(p) for p in permutation_set(24, grid=2).tolist()}
    assert perms == set(itertools.permutations(range(4)))
