import torch

from ssl_lab.data.augment import BatchAugment


def test_shifts_move_each_image_by_at_most_the_padding_and_keep_its_pixels():
    torch.manual_seed(0)
    image = torch.zeros(1, 1, 9, 9)
    image[0, 0, 4, 4] = 1.0  # one bright pixel in the middle
    shifted = BatchAugment(crop_padding=2)(image.repeat(500, 1, 1, 1))
    positions = torch.nonzero(shifted[:, 0])[:, 1:]
    assert len(positions) == 500  # the pixel is never cropped away
    assert positions.min() >= 2 and positions.max() <= 6
    assert len({tuple(p) for p in positions.tolist()}) == 25  # every offset in [-2, 2]^2 occurs


def test_flips_mirror_about_half_of_the_batch():
    torch.manual_seed(0)
    images = torch.arange(8.0).reshape(1, 1, 1, 8).repeat(1000, 1, 1, 1)
    out = BatchAugment(hflip=True)(images)
    flipped = (out[:, 0, 0, 0] == 7).float().mean().item()
    assert 0.45 < flipped < 0.55
    assert torch.equal(
        out[out[:, 0, 0, 0] == 7], images[:1].flip(-1).expand(int(flipped * 1000), -1, -1, -1)
    )


def test_nothing_changes_outside_training():
    images = torch.randn(4, 3, 8, 8)
    augment = BatchAugment(crop_padding=3, hflip=True).eval()
    assert torch.equal(augment(images), images)
