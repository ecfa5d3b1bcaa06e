import pytest
import torch
from conftest import TINY, run_cli, write_crafted_pickle

from ssl_lab.backbones.checkpoint import load_backbone_weights, read_meta, save_backbone
from ssl_lab.backbones.resnet import ResNet
from ssl_lab.backbones.small_cnn import SmallCNN
from ssl_lab.errors import SslLabError


def test_safetensors_round_trip_keeps_weights_and_facts(tmp_path):
    source = SmallCNN(1, (8, 16))
    path = tmp_path / "b.safetensors"
    save_backbone(source, path, {"widths": [8, 16]}, {"pretext": "rotation", "epochs": 3})
    target = SmallCNN(1, (8, 16))
    meta = load_backbone_weights(target, path)
    assert meta == {"pretext": "rotation", "epochs": 3} == read_meta(path)
    for key, value in source.state_dict().items():
        assert torch.equal(value, target.state_dict()[key])
    assert [p.name for p in tmp_path.iterdir()] == ["b.safetensors"]  # no temp file left


def test_lightning_style_state_dict_loads_with_prefix_stripped(tmp_path):
    source = SmallCNN(1, (8,))
    path = tmp_path / "model.ckpt"
    torch.save(
        {
            "state_dict": {f"backbone.{k}": v for k, v in source.state_dict().items()}
            | {"task.head.weight": torch.zeros(4, 8)}
        },
        path,
    )
    target = SmallCNN(1, (8,))
    load_backbone_weights(target, path)
    assert torch.equal(target.stages[0][0].weight, source.stages[0][0].weight)


def test_checkpoint_for_another_backbone_is_refused_naming_the_mismatch(tmp_path):
    path = tmp_path / "b.safetensors"
    save_backbone(SmallCNN(1, (8, 16)), path, {}, {"backbone": "small_cnn"})
    with pytest.raises(SslLabError, match=r"stages.0.0.weight \(8, 1, 3, 3\) vs \(4, 1, 3, 3\)"):
        load_backbone_weights(SmallCNN(1, (4, 16)), path)
    with pytest.raises(SslLabError, match="saved for backbone=small_cnn.*missing keys"):
        load_backbone_weights(ResNet(18, in_channels=1), path)


def test_crafted_pickle_is_refused_and_its_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    write_crafted_pickle(tmp_path / "evil.pt", marker)
    with pytest.raises(SslLabError, match="refused.*not a plain tensor checkpoint"):
        load_backbone_weights(SmallCNN(1, (8,)), tmp_path / "evil.pt")
    assert not marker.exists()


def test_crafted_pickle_as_backbone_checkpoint_fails_the_run_in_one_line(tmp_path):
    marker = tmp_path / "pwned"
    write_crafted_pickle(tmp_path / "evil.ckpt", marker)
    result = run_cli(tmp_path, *TINY, f"backbone.checkpoint={tmp_path / 'evil.ckpt'}")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        f"ssl-lab: error: backbone.checkpoint: refused {tmp_path / 'evil.ckpt'}: not a plain "
        f"tensor checkpoint"
    ), result.stderr
    assert not marker.exists()
    assert not list(tmp_path.rglob("metrics.json"))


def test_corrupt_safetensors_is_refused(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(SslLabError, match="not a readable safetensors file"):
        load_backbone_weights(SmallCNN(1, (8,)), path)
