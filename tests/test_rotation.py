import torch

from ssl_lab.pretext.rotation import RotationPrediction


def test_rotation_batch_holds_all_four_rotations_of_every_image():
    task = RotationPrediction(feature_dim=8)
    images = torch.randn(5, 3, 12, 12)
    inputs, labels = task.make_batch((images, torch.zeros(5, dtype=torch.long)))
    assert inputs.shape == (20, 3, 12, 12)
    assert labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    for i in range(20):
        k, source = labels[i].item(), images[i % 5]
        assert torch.equal(inputs[i], torch.rot90(source, k, dims=(1, 2)))


def test_rotation_labels_are_balanced_and_match_the_head():
    task = RotationPrediction(feature_dim=8)
    _, labels = task.make_batch((torch.randn(7, 1, 8, 8),))
    assert torch.bincount(labels).tolist() == [7, 7, 7, 7]
    assert task.head.out_features == 4


def test_rotation_of_a_nonsquare_free_pattern_is_distinguishable():
    image = torch.zeros(1, 1, 4, 4)
    image[0, 0, 0, 1] = 1.0  # a single bright pixel moves to a different place under each rotation
    inputs, _ = RotationPrediction(feature_dim=2).make_batch((image,))
    positions = {tuple(torch.nonzero(inputs[k, 0])[0].tolist()) for k in range(4)}
    assert positions == {(0, 1), (2, 0), (3, 2), (1, 3)}
