"""backbone=vit_tiny: the house's backbone contract (pooled features, a feature map, blocks for
freeze policies) on torchvision's ViT blocks, and the image tasks that run on it."""

import pytest
import torch
from conftest import read_metrics, run_cli
from test_schema import checked

from ssl_lab.backbones.vit import VisionTransformer
from ssl_lab.errors import SslLabError


def small_vit(**kw) -> VisionTransformer:
    return VisionTransformer(**{"image_size": 32, "width": 24, "depth": 3, "heads": 3, **kw})


def test_pooled_features_and_a_patch_map_of_stride_patch_size():
    vit = small_vit(in_channels=3)
    x = torch.randn(2, 3, 32, 32)
    assert vit(x).shape == (2, 24) and vit.out_dim == 24
    assert vit.forward_features(x).shape == (2, 24, 8, 8)
    assert torch.allclose(vit(x), vit.forward_features(x).mean(dim=(2, 3)), atol=1e-6)
    cls = small_vit(in_channels=3, pooling="cls")
    tokens, grid = cls.forward_tokens(x)
    assert grid == (8, 8) and torch.equal(cls(x), tokens[:, 0])


def test_blocks_run_from_input_to_output_and_hold_every_parameter_once():
    vit = small_vit()
    blocks = vit.blocks()
    assert len(blocks) == 1 + 3
    ids = [id(p) for b in blocks for p in b.parameters()]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in vit.parameters()}
    assert any(p is vit.norm.weight for p in blocks[-1].parameters())  # the last block's


def test_other_image_sizes_get_resized_position_embeddings():
    vit = small_vit()
    same = vit.embedding.positions(8, 8)
    assert torch.equal(same, vit.embedding.pos_embedding[:, 1:])
    assert vit(torch.randn(4, 1, 9, 9)).shape == (4, 24)  # a jigsaw tile: 2x2 patches
    with pytest.raises(SslLabError, match="smaller than one patch"):
        vit(torch.randn(1, 1, 3, 3))


def test_a_patch_that_does_not_divide_the_image_is_refused_in_one_line():
    with pytest.raises(SslLabError) as caught:
        checked("backbone=vit_tiny", "backbone.patch_size=5")
    assert str(caught.value).startswith(
        "backbone.patch_size=5: an integer >= 1 that divides backbone.image_size (32)"
    )


TINY_VIT = [
    "backbone=vit_tiny",
    "backbone.width=24",
    "backbone.depth=1",
    "data.size=16",
    "logger=none",
    "pretext.epochs=1",
    "data.labels_per_class=10",
]


@pytest.mark.slow
def test_every_image_pretext_task_and_the_segmentation_decoder_run_on_it(tmp_path):
    result = run_cli(
        tmp_path,
        "-m",
        "pretext=rotation,jigsaw,inpainting,simclr,mae",
        "downstream=linear_probe",
        "downstream.epochs=2",
        *TINY_VIT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = read_metrics(tmp_path / "outputs" / "multirun")
    assert sorted(m["pretext"] for m in runs) == [
        "inpainting",
        "jigsaw",
        "mae",
        "rotation",
        "simclr",
    ]
    assert all(m["backbone"] == "vit_tiny" and m["score"] > 0.15 for m in runs), runs
    seg = run_cli(
        tmp_path, "pretext=none", "downstream=segmentation", "downstream.epochs=1", *TINY_VIT
    )
    assert seg.returncode == 0, seg.stderr[-3000:]
    (m,) = read_metrics(tmp_path / "outputs" / "runs")
    assert m["downstream"] == "segmentation" and 0 < m["score"] <= 1
