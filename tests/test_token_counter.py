"""TokenCounter: the tokens pretraining read, padding excluded, summed at each epoch end and
kept across a resume."""

from types import SimpleNamespace

import torch

from ssl_lab.monitor import TokenCounter


def _trainer(world: int = 1) -> SimpleNamespace:
    # the strategy's reduce: a sum over `world` processes that each read the same batches
    return SimpleNamespace(strategy=SimpleNamespace(reduce=lambda t, reduce_op: t * world))


def test_counts_ids_that_are_not_padding_and_sums_over_processes():
    counter = TokenCounter(pad_id=0)
    module = SimpleNamespace(device=torch.device("cpu"))
    batches = [
        (torch.tensor([[2, 7, 9, 3, 0], [2, 5, 3, 0, 0]]), torch.tensor([1, 0])),
        (torch.tensor([[2, 4, 4, 4, 3]]), torch.tensor([1])),
    ]
    for i, batch in enumerate(batches):
        counter.on_train_batch_end(_trainer(), module, None, batch, i)
    assert counter.total == 0  # counted at the epoch end, when every process has its share
    counter.on_train_epoch_end(_trainer(world=2), module)
    assert counter.total == 2 * (4 + 3 + 5)
    counter.on_train_batch_end(_trainer(), module, None, batches[1], 0)
    counter.on_train_epoch_end(_trainer(), module)
    assert counter.total == 24 + 5
    resumed = TokenCounter(pad_id=0)
    resumed.load_state_dict(counter.state_dict())
    assert resumed.total == 29
