import pytest
import torch
from conftest import TINY, read_metrics, run_cli
from hydra.utils import instantiate
from torchmetrics.functional.classification import multiclass_jaccard_index

from ssl_lab.backbones.small_cnn import SmallCNN
from ssl_lab.downstream.segmentation import derive_masks, fcn_decoder


def test_derived_masks_are_class_plus_one_on_bright_pixels_and_background_elsewhere():
    mean, std = torch.tensor([0.2]), torch.tensor([0.4])
    raw = torch.full((2, 1, 4, 4), 0.1)
    raw[0, 0, 1, 1:3] = 0.9  # a bright stroke in image 0 ...
    raw[0, 0, 2, 2] = 0.5  # ... and a pixel exactly at the threshold: not foreground
    raw[1, 0, 3, :] = 0.6  # the bottom row of image 1
    normalised = (raw - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    masks = derive_masks(normalised, torch.tensor([3, 0]), (0.5 - mean) / std)
    expected = torch.zeros(2, 4, 4, dtype=torch.long)
    expected[0, 1, 1:3] = 4  # class 3 -> 4
    expected[1, 3, :] = 1  # class 0 -> 1, never confused with background
    assert torch.equal(masks, expected)


def test_a_pixel_is_foreground_when_any_channel_is_bright():
    raw = torch.zeros(1, 3, 2, 2)
    raw[0, 2, 0, 0] = 1.0
    masks = derive_masks(raw, torch.tensor([5]), torch.full((3,), 0.5))
    assert masks.tolist() == [[[6, 0], [0, 0]]]


def test_the_decoder_scores_every_class_on_a_map_upsampled_from_the_features():
    features = SmallCNN(1, (8, 16, 32)).forward_features(torch.randn(2, 1, 16, 16))  # 2x2
    assert fcn_decoder(32, 11, levels=3, width=64)(features).shape == (2, 11, 16, 16)


@pytest.mark.slow
def test_a_supervised_backbone_segments_better_than_predicting_all_background(
    tmp_path, compose_cfg
):
    tiny = [a for a in TINY if not a.startswith("downstream.")]
    settings = [*tiny, "data.labels_per_class=10"]
    result = run_cli(
        tmp_path,
        "pretext=supervised",
        "downstream=segmentation",
        *settings,
        "pretext.epochs=3",
        "downstream.epochs=6",
    )  # a decoder needs a few epochs
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = read_metrics(tmp_path / "outputs")
    assert metrics["score_name"] == "test/miou" and 0.0 <= metrics["test_pixel_acc"] <= 1.0

    data = instantiate(compose_cfg(*settings).data)
    data.setup()
    images, labels = data.splits["test"].tensors
    masks = derive_masks(images, labels, (0.5 - data.mean) / data.std)
    background = multiclass_jaccard_index(
        torch.zeros_like(masks), masks, data.num_classes + 1, average="macro"
    )
    assert 0.0 < background < 0.1  # background's IoU (~0.7) averaged with ten classes at 0
    assert metrics["score"] > background + 0.05, (metrics["score"], background)
