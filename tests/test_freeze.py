from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ssl_lab.backbones.small_cnn import SmallCNN
from ssl_lab.downstream.classifier import ClassifierModule, block_lr_scales
from ssl_lab.errors import SslLabError


def test_layer_decay_slows_blocks_towards_the_input():
    assert block_lr_scales(4, "full", backbone_lr_scale=0.5, layer_decay=0.5) == [
        0.5 * 0.125,
        0.5 * 0.25,
        0.5 * 0.5,
        0.5,
    ]
    assert block_lr_scales(4, "last_k", trainable_blocks=2, layer_decay=0.5) == [0, 0, 0.5, 1.0]


def test_frozen_or_a_zero_backbone_scale_freezes_every_block():
    assert block_lr_scales(3, "frozen") == [0.0] * 3
    assert block_lr_scales(3, "full", backbone_lr_scale=0.0) == [0.0] * 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"freeze": "partial"}, "downstream.freeze=partial"),
        (
            {"freeze": "last_k", "trainable_blocks": 5},
            "trainable_blocks=5: the backbone has 4 blocks",
        ),
        ({"freeze": "last_k", "trainable_blocks": 0}, "trainable_blocks=0"),
        ({"layer_decay": 0.0}, "layer_decay=0.0"),
    ],
)
def test_a_bad_policy_is_refused_in_one_line(kwargs, match):
    with pytest.raises(SslLabError, match=match):
        block_lr_scales(4, **kwargs)


def _train(freeze: str, steps: int = 4, **policy) -> tuple[ClassifierModule, dict, dict]:
    """Train a tiny CNN + head for a few steps; return it with its state before and after."""
    torch.manual_seed(0)
    backbone = SmallCNN(in_channels=1, widths=(4, 8, 8))
    module = ClassifierModule(
        backbone,
        nn.Linear(8, 3),
        3,
        lr=0.05,
        optimizer=partial(torch.optim.SGD, momentum=0.0),
        freeze=freeze,
        **policy,
    )
    before = {k: v.clone() for k, v in module.state_dict().items()}
    data = TensorDataset(torch.randn(32, 1, 8, 8) * 3 + 1, torch.randint(0, 3, (32,)))
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    return module, before, module.state_dict()


def _moved(before: dict, after: dict, prefix: str) -> dict[str, bool]:
    """Per tensor under ``prefix`` (weights and batch-norm statistics): did it change?"""
    return {
        k: not torch.equal(before[k], after[k])
        for k in before
        if k.startswith(prefix) and "num_batches_tracked" not in k
    }


def test_last_k_trains_only_the_top_blocks_and_freezes_batch_norm_statistics_below():
    module, before, after = _train("last_k", trainable_blocks=1)
    assert module.n_trainable_blocks == 1
    for stage in (0, 1):
        frozen = _moved(before, after, f"backbone.stages.{stage}.")
        assert frozen and not any(frozen.values()), frozen
        assert not module.backbone.stages[stage].training
    top = _moved(before, after, "backbone.stages.2.")
    assert all(top.values()), top  # weights and running statistics both moved
    assert module.backbone.stages[2].training
    assert all(_moved(before, after, "head.").values())


def test_frozen_keeps_the_whole_backbone_and_full_trains_all_of_it():
    _, before, after = _train("frozen")
    assert not any(_moved(before, after, "backbone.").values())
    assert all(_moved(before, after, "head.").values())
    _, before, after = _train("full")
    assert all(_moved(before, after, "backbone.").values())


def test_each_trainable_block_gets_its_decayed_learning_rate():
    backbone = SmallCNN(in_channels=1, widths=(4, 8, 8))
    module = ClassifierModule(
        backbone,
        nn.Linear(8, 3),
        3,
        lr=1.0,
        optimizer=torch.optim.SGD,
        backbone_lr_scale=0.5,
        freeze="last_k",
        trainable_blocks=2,
        layer_decay=0.1,
    )
    optimizer = module.configure_optimizers()["optimizer"]
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1.0, 0.05, 0.5])
    trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert trained == {id(p) for p in module.parameters() if p.requires_grad}
    assert not any(p.requires_grad for p in backbone.stages[0].parameters())
