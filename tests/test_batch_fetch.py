"""Batched fetching gives exactly the batches that per-example fetching and stacking give."""

import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader, Subset, TensorDataset

from ssl_lab.data.batch_fetch import BatchFetch, as_batch
from ssl_lab.data.in_memory import CyclingSampler


def _datasets() -> dict[str, torch.utils.data.Dataset]:
    g = torch.Generator().manual_seed(0)
    a = TensorDataset(torch.randn(50, 1, 4, 4, generator=g), torch.arange(50))
    b = TensorDataset(torch.randn(7, 1, 4, 4, generator=g), torch.full((7,), -1))
    c = TensorDataset(torch.randn(20, 1, 4, 4, generator=g), torch.arange(100, 120))
    return {
        "tensors": a,
        "subset": Subset(a, [3, 1, 4, 1, 5, 9, 2, 6, 49]),
        "concat": ConcatDataset([a, b, Subset(c, list(range(0, 20, 3)))]),
    }


@pytest.mark.parametrize("name", ["tensors", "subset", "concat"])
@pytest.mark.parametrize("sampler", ["shuffle", "cycling"])
def test_batches_equal_the_per_example_path(name: str, sampler: str) -> None:
    dataset = _datasets()[name]

    def batches(fast: bool) -> list[tuple[torch.Tensor, ...]]:
        torch.manual_seed(1)  # both loaders draw the same sampler order
        kwargs = (
            {"shuffle": True}
            if sampler == "shuffle"
            else {"sampler": CyclingSampler(len(dataset), 3 * len(dataset) + 1)}
        )
        loader = (
            DataLoader(BatchFetch(dataset), batch_size=8, collate_fn=as_batch, **kwargs)
            if fast
            else DataLoader(dataset, batch_size=8, **kwargs)
        )
        return list(loader)

    slow, fast = batches(False), batches(True)
    assert len(slow) == len(fast) > 1
    for s, f in zip(slow, fast):
        assert len(s) == len(f) == 2
        for ts, tf in zip(s, f):
            assert ts.dtype == tf.dtype and torch.equal(ts, tf)


def test_concat_keeps_the_order_of_indices_across_parts() -> None:
    dataset = _datasets()["concat"]
    index = [52, 0, 56, 57, 49, 50, 63, 1]  # b, a, b, c, a, b, c, a
    x, y = BatchFetch(dataset).__getitems__(index)
    assert y.tolist() == [int(dataset[i][1]) for i in index]
    assert torch.equal(x, torch.stack([dataset[i][0] for i in index]))


def test_refuses_a_dataset_it_cannot_index() -> None:
    class Listy(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> int:
            return i

    with pytest.raises(TypeError, match="Listy"):
        BatchFetch(Listy())


def test_image_configs_fetch_batches_by_default(compose_cfg) -> None:
    from hydra.utils import instantiate

    data = instantiate(compose_cfg("data=digits", "data.labels_per_class=5").data)
    data.setup()
    for loader in (data.unlabelled_dataloader(), data.train_dataloader(), data.test_dataloader()):
        assert isinstance(loader.dataset, BatchFetch)
        x, y = next(iter(loader))
        assert x.shape == (data.batch_size, 1, 32, 32) and y.shape == (data.batch_size,)
    slow = instantiate(compose_cfg("data=digits", "data.batch_fetch=false").data)
    slow.setup()
    assert not isinstance(slow.test_dataloader().dataset, BatchFetch)
    assert all(
        torch.equal(a, b)
        for a, b in zip(next(iter(slow.test_dataloader())), next(iter(data.test_dataloader())))
    )
