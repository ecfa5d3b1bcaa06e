"""``data.on_device``: the splits move to the accelerator once, and every loader then draws the
same batches there. There is no GPU here, so the splits move to PyTorch's meta device (tensors
with shapes and no values): that shows every loader, built before or after the move, asks for the
same indices as on the host and gets its batch from the moved tensors, on that device, with the
host path's shapes and dtypes. That one index gives one batch is ``test_batch_fetch``'s;
``benchmarks/gpu_check.py`` compares the values on a GPU."""

import pytest
import torch
from hydra.utils import instantiate
from lightning_fabric.utilities.distributed import DistributedSamplerWrapper
from torch.utils.data import DataLoader, DistributedSampler

from ssl_lab.data.batch_fetch import BatchFetch
from ssl_lab.data.placement import place
from ssl_lab.errors import user_error

META = torch.device("meta")


def _data(compose_cfg, *overrides: str):
    cfg = compose_cfg("data=digits", "data.labels_per_class=5", "data.batch_size=16", *overrides)
    data = instantiate(cfg.data)
    data.setup()
    return data


def _loaders(data) -> dict[str, DataLoader]:
    return {
        "pretraining": data.unlabelled_dataloader(),
        "supervised pretraining": data.labelled_pretraining_dataloader(),
        "transfer (cycling)": data.train_dataloader(),
        "labelled, in order": data.loader(data.labelled_dataset()),
        "val": data.val_dataloader(),
        "test": data.test_dataloader(),
    }


def _shards(loader: DataLoader, rank: int) -> DataLoader:
    """``loader`` as Lightning rebuilds it for process ``rank`` of 2 under DDP."""
    sampler = loader.sampler
    shard = (
        DistributedSamplerWrapper(sampler, num_replicas=2, rank=rank, shuffle=False)
        if type(sampler).__name__ == "CyclingSampler"
        else DistributedSampler(loader.dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
    )
    return DataLoader(
        loader.dataset, batch_size=loader.batch_size, sampler=shard, collate_fn=loader.collate_fn
    )


def _draw(loader: DataLoader, monkeypatch) -> tuple[list[list[int]], list[tuple]]:
    """The indices each batch asked for, and each batch's (device, shape, dtype)s."""
    asked: list[list[int]] = []
    fetch = BatchFetch.__getitems__
    monkeypatch.setattr(
        BatchFetch, "__getitems__", lambda self, idx: asked.append(list(idx)) or fetch(self, idx)
    )
    torch.manual_seed(0)
    batches = [tuple((t.device, t.shape, t.dtype) for t in batch) for batch in loader]
    monkeypatch.setattr(BatchFetch, "__getitems__", fetch)
    return asked, batches


def test_every_loader_draws_the_host_paths_batches_from_the_moved_splits(compose_cfg, monkeypatch):
    host, device = _data(compose_cfg), _data(compose_cfg, "data.on_device=true")
    built_before = _loaders(device)
    assert place(device.splits, True, 0, META)
    assert all(t.device == META for split in device.splits.values() for t in split.tensors)
    for name, loader in _loaders(host).items():
        expected_indices, expected = _draw(loader, monkeypatch)
        assert len(expected) > 1, name
        for moved in (built_before[name], _loaders(device)[name]):
            indices, batches = _draw(moved, monkeypatch)
            assert indices == expected_indices, name
            assert batches == [
                tuple((META, shape, dtype) for _, shape, dtype in batch) for batch in expected
            ], name
        for rank in (0, 1):  # under DDP each process draws its own shard, on its device
            host_shard = _draw(_shards(loader, rank), monkeypatch)
            device_shard = _draw(_shards(built_before[name], rank), monkeypatch)
            assert device_shard[0] == host_shard[0], (name, rank)


def test_placement_moves_only_when_asked_and_only_to_an_accelerator(compose_cfg):
    data = _data(compose_cfg)
    assert data.on_device == "auto"
    assert not place(data.splits, True, 0, torch.device("cpu"))  # the host: nothing to move
    assert not place(data.splits, False, 0, META)
    assert not place(data.splits, "auto", 0, META)  # auto: only a GPU with room for it
    assert all(t.device.type == "cpu" for split in data.splits.values() for t in split.tensors)
    assert place(data.splits, True, 0, META) and place(data.splits, "auto", 0, META)  # once


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["data.on_device=maybe"], "data.on_device=maybe: choose auto, true or false"),
        (["data.on_device=true", "data.num_workers=2"], "data.num_workers=0"),
    ],
)
def test_a_placement_that_cannot_work_is_refused_in_one_line(compose_cfg, overrides, match):
    with pytest.raises(Exception) as raised:  # Hydra wraps what a constructor raises
        instantiate(compose_cfg("data=digits", *overrides).data)
    assert match in str(user_error(raised.value))


def test_the_cache_key_ignores_where_the_data_lives(compose_cfg):
    from ssl_lab.cache import pretrain_key

    keys = {pretrain_key(compose_cfg(f"data.on_device={v}")) for v in ("auto", "true", "false")}
    assert len(keys) == 1
