import pytest
import torch

from ssl_lab.backbones.small_cnn import SmallCNN
from ssl_lab.pretext.inpainting import Inpainting, make_masks


def test_center_mask_is_the_central_quarter():
    mask = make_masks("center", 3, 32, 32)
    assert mask.shape == (3, 1, 32, 32) and mask.dtype == torch.bool
    assert mask.float().mean().item() == 0.25
    assert mask[0, 0, 8:24, 8:24].all() and mask[0, 0].sum() == 256


def test_random_blocks_cover_at_most_a_quarter_and_move():
    torch.manual_seed(0)
    fraction = make_masks("random_blocks", 2000, 32, 32).float().mean(dim=(1, 2, 3))
    assert fraction.max().item() <= 0.25 + 1e-6
    assert fraction.min().item() >= 1 / 16  # at least one 8x8 block
    assert 0.18 < fraction.mean().item() < 0.25  # four blocks of 1/16, overlaps take some
    assert not torch.equal(
        make_masks("random_blocks", 1, 32, 32), make_masks("random_blocks", 1, 32, 32)
    )


def test_irregular_strokes_cover_about_a_sixth():
    torch.manual_seed(0)
    fraction = make_masks("irregular", 2000, 32, 32).float().mean(dim=(1, 2, 3))
    assert 0.13 < fraction.mean().item() < 0.19
    assert fraction.min().item() > 0.0 and fraction.max().item() < 0.3


def test_hidden_pixels_are_set_to_the_mean_and_the_mask_travels_with_the_target():
    task = Inpainting(feature_dim=32, channels=3)
    images = torch.randn(4, 3, 32, 32)
    inputs, targets = task.make_batch((images,))
    mask = targets[:, -1:].bool()
    assert torch.equal(targets[:, :3], images)
    assert (inputs.masked_select(mask.expand_as(inputs)) == 0).all()
    assert torch.equal(
        inputs.masked_select(~mask.expand_as(inputs)), images.masked_select(~mask.expand_as(images))
    )


def test_loss_is_zero_when_the_hidden_region_and_its_ring_are_reconstructed():
    task = Inpainting(feature_dim=32, channels=1)
    images = torch.randn(2, 1, 32, 32)
    _, targets = task.make_batch((images,))
    wrong_far_away = images.clone()
    wrong_far_away[..., :2, :2] += 5.0  # corners are neither hidden nor in the ring
    assert task.loss(wrong_far_away, targets).item() == 0.0
    assert task.loss(images + 1.0, targets).item() == pytest.approx(1.0)


def test_the_ring_around_the_hole_weighs_more():
    task = Inpainting(feature_dim=32, channels=1, overlap=2, overlap_weight=10.0)
    weights = task.loss_weights(make_masks("center", 1, 32, 32).float())
    assert weights[0, 0, 16, 16] == 1.0  # inside the hole
    assert weights[0, 0, 6, 16] == 10.0 and weights[0, 0, 7, 16] == 10.0  # the 2 px ring
    assert weights[0, 0, 5, 16] == 0.0


def test_decoder_reconstructs_at_input_size_from_the_feature_map():
    task = Inpainting(feature_dim=32, channels=1, decoder_levels=3)
    inputs, _ = task.make_batch((torch.randn(2, 1, 32, 32),))
    assert task(SmallCNN(1, (8, 16, 32)), inputs).shape == (2, 1, 32, 32)  # 4x4 map, 3 levels


def test_adversarial_term_is_off_by_default_and_trains_each_player_with_its_own_term():
    images = torch.randn(4, 1, 32, 32)
    plain = Inpainting(feature_dim=32, channels=1, decoder_levels=3)
    assert not hasattr(plain, "discriminator")

    task = Inpainting(feature_dim=32, channels=1, decoder_levels=3, adversarial_weight=0.001)
    backbone = SmallCNN(1, (8, 16, 32))
    inputs, targets = task.make_batch((images,))
    task.loss(task(backbone, inputs), targets).backward()
    assert all(p.grad is not None for p in task.discriminator.parameters())
    assert all(p.grad is not None for p in task.head.parameters())

    # the generator's term alone gives the discriminator no gradient
    task.zero_grad()
    filled = task(backbone, inputs)
    frozen = {n: p.detach() for n, p in task.discriminator.named_parameters()}
    torch.func.functional_call(task.discriminator, frozen, (filled,)).sum().backward()
    assert all(p.grad is None for p in task.discriminator.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in task.head.parameters())


@pytest.mark.parametrize("radius", [1.0, 2.0, 2.5, 6.0])
def test_brush_mask_is_every_pixel_within_the_radius_of_a_point(radius):
    from ssl_lab.pretext.inpainting import brush_mask

    torch.manual_seed(0)
    height, width = 20, 27
    points = torch.rand(16, 5, 2) * torch.tensor([height - 1.0, width - 1.0])
    points[0, 0] = torch.tensor([0.0, 0.0])  # corners and edges: the brush is cut off there
    points[1, 0] = torch.tensor([height - 1.0, width - 1.0])
    points[2, 0] = torch.tensor([0.5, width - 1.0])
    ys = torch.arange(height).view(1, 1, height, 1).float()
    xs = torch.arange(width).view(1, 1, 1, width).float()
    reference = (
        (ys - points[..., 0, None, None]) ** 2 + (xs - points[..., 1, None, None]) ** 2 <= radius**2
    ).any(1, keepdim=True)
    assert torch.equal(brush_mask(points, radius, height, width), reference)
