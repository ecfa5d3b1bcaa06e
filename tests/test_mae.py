"""MAE: exactly mask_ratio of every image's patches hidden, every set of that size as likely; the
encoder sees the visible patches only; the loss reads the hidden ones only; a ViT or a refusal."""

from math import comb

import pytest
import torch
from conftest import logged, read_metrics, run_cli
from test_schema import checked

from ssl_lab.backbones.vit import VisionTransformer
from ssl_lab.errors import SslLabError
from ssl_lab.pretext.mae import MaskedAutoencoder, patchify, random_patch_mask, unpatchify


def test_every_image_hides_exactly_its_share_of_patches():
    hidden = random_patch_mask(500, 64, keep=16)
    assert (hidden.sum(1) == 48).all()  # 0.75 of 64, for each image, not on average


def test_every_patch_and_every_pair_is_hidden_as_often_as_a_uniform_draw_says():
    torch.manual_seed(0)
    draws = 20000
    hidden = random_patch_mask(draws, 64, keep=16).float()
    per_patch = hidden.mean(0)  # each: 48/64 = 0.75; binomial std 0.0031 per patch
    assert (per_patch - 0.75).abs().max() < 0.015
    both = (hidden.T @ hidden / draws)[~torch.eye(64, dtype=torch.bool)]
    expected = comb(62, 46) / comb(64, 48)  # both of two given patches among the 48 hidden
    assert expected == pytest.approx(48 * 47 / (64 * 63))
    assert (both - expected).abs().max() < 0.02 and abs(both.mean() - expected) < 0.002


def test_make_batch_stacks_the_patch_mask_over_the_unchanged_images():
    task = MaskedAutoencoder(16, channels=3, image_size=16, patch_size=4, mask_ratio=0.75)
    images = torch.randn(5, 3, 16, 16)
    inputs, targets = task.make_batch((images,))
    assert torch.equal(inputs, targets) and torch.equal(inputs[:, :3], images)
    mask = inputs[:, 3]
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    patches = mask.reshape(5, 4, 4, 4, 4)  # (B, row, px, col, px): constant within a patch
    assert (patches == patches[:, :, :1, :, :1]).all()
    assert (mask[:, ::4, ::4].flatten(1).sum(1) == 12).all()  # 12 of 16 patches


def test_patchify_and_unpatchify_are_inverse():
    images = torch.randn(2, 3, 12, 12)
    assert torch.equal(unpatchify(patchify(images, 4), 4, 3, 3), images)
    assert torch.equal(patchify(images, 4)[0, 1, :3], images[0, :, 0, 4])  # pixel (0, 4)


def test_the_encoder_sees_only_the_visible_patches():
    vit = VisionTransformer(in_channels=1, image_size=16, patch_size=4, width=12, depth=2, heads=3)
    task = MaskedAutoencoder(12, channels=1, image_size=16, patch_size=4, decoder_width=8)
    seen = []
    vit.layers[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    inputs, targets = task.make_batch((torch.randn(3, 1, 16, 16),))
    out = task(vit, inputs)
    assert seen == [torch.Size([3, 1 + 4, 12])]  # the class token and 4 of 16 patches
    assert out.shape == (3, 16, 16)  # every patch's 4x4 pixels predicted


def test_the_loss_reads_the_hidden_patches_only_and_normalises_each_patch():
    task = MaskedAutoencoder(12, channels=1, image_size=16, patch_size=4)
    images = torch.randn(3, 1, 16, 16)
    _, targets = task.make_batch((images,))
    hidden = targets[:, -1, ::4, ::4].flatten(1).bool()
    patches = patchify(images, 4)
    wanted = (patches - patches.mean(-1, keepdim=True)) / (
        patches.var(-1, keepdim=True) + 1e-6
    ).sqrt()
    outputs = torch.randn(3, 16, 16)
    direct = ((outputs - wanted) ** 2).mean(-1)[hidden].mean()
    assert float(task.loss(outputs, targets)) == pytest.approx(float(direct), rel=1e-5)
    changed = outputs.clone()
    changed[~hidden] += 100.0  # predictions of visible patches do not count
    assert float(task.loss(changed, targets)) == pytest.approx(float(direct), rel=1e-5)
    wanted_perfect = torch.where(hidden[..., None], wanted, outputs)
    assert float(task.loss(wanted_perfect, targets)) == pytest.approx(0.0, abs=1e-6)


def test_mae_on_another_backbone_is_refused_in_one_line():
    with pytest.raises(SslLabError) as caught:
        checked("pretext=mae")  # backbone=small_cnn
    assert str(caught.value) == (
        "pretext.task.patch_size=null: pretext=mae needs a ViT backbone (backbone=vit_tiny), "
        "not backbone=small_cnn"
    )
    with pytest.raises(SslLabError, match=r"^pretext.task.mask_ratio=0.99: hides all 16"):
        checked("pretext=mae", "backbone=vit_tiny", "data.size=16", "pretext.task.mask_ratio=0.99")


@pytest.mark.slow
def test_mae_with_vit_tiny_on_digits_writes_metrics_and_its_loss_falls(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        tmp_path,
        f"hydra.run.dir={run_dir}",
        "pretext=mae",
        "backbone=vit_tiny",
        "backbone.width=48",
        "backbone.depth=2",
        "data.size=16",
        "logger=csv",
        "pretext.epochs=3",
        "downstream.epochs=5",
        "data.labels_per_class=10",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    losses = logged(run_dir, "pretrain/train_loss")
    assert len(losses) == 3 and losses[-1] < losses[0]
    (m,) = read_metrics(run_dir)
    assert m["pretext"] == "mae" and m["backbone"] == "vit_tiny"
    assert m["score"] > 0.25  # chance: 0.1
    assert (run_dir / "pretext_mae.png").is_file()
