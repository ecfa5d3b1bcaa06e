"""Where a run's in-memory data lives (``data.on_device``): on the host, with each batch copied
to the accelerator, or on the accelerator itself, moved there once.

On a GPU a small CNN's step takes milliseconds; a host-to-device copy of every batch, and the
host work of making it, is then a large share. With the splits on the device, the loaders still
draw indices on the host (samplers, shuffling and Lightning's distributed sampler are untouched)
and ``batch_fetch`` indexes the device tensors with them: the same batches, already where the
model is, so Lightning's own transfer has nothing to move.

The device is only known once a trainer has set up (under DDP each process has its own), so
``PlaceData``, a callback on every trainer of a run, moves the data when the first one does.
Moving replaces the tensors inside the split datasets, so loaders built before see the move.
"""

import logging

import pytorch_lightning as pl
import torch
from torch.utils.data import TensorDataset

from ssl_lab.errors import SslLabError

log = logging.getLogger("ssl_lab")

CHOICES = ("auto", True, False)
ROOM = 0.25  # auto: the data may take at most this share of the device's free memory


def check_on_device(value: bool | str, num_workers: int) -> bool | str:
    """``value`` as given (``auto``, true or false), refused in one line if it cannot work."""
    if value not in CHOICES:
        raise SslLabError(f"data.on_device={value}: choose auto, true or false")
    if value is True and num_workers > 0:
        raise SslLabError(
            "data.on_device=true draws batches on the device, which loader worker processes "
            "cannot: set data.num_workers=0"
        )
    return value


def fits(nbytes: int, device: torch.device) -> bool:
    """Whether ``nbytes`` fit comfortably (``ROOM`` of the free memory) on a CUDA ``device``."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= ROOM * free


def place(
    splits: dict[str, TensorDataset], setting: bool | str, num_workers: int, device: torch.device
) -> bool:
    """Move every split's tensors to ``device`` if ``setting`` asks for it (``auto``: a GPU with
    room for them, and no loader workers); True if they are there now. On the CPU there is
    nothing to move: the data is already where the model is."""
    if setting is False or device.type == "cpu" or not splits:
        return False
    tensors = [t for dataset in splits.values() for t in dataset.tensors]
    if all(t.device == device for t in tensors):
        return True
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    if setting == "auto" and (num_workers > 0 or not fits(nbytes, device)):
        log.info("data.on_device=auto: data stays on the host (%.2f GB)", nbytes / 1e9)
        return False
    for dataset in splits.values():
        dataset.tensors = tuple(t.to(device) for t in dataset.tensors)
    log.info("data.on_device: %.2f GB moved to %s once", nbytes / 1e9, device)
    return True


class PlaceData(pl.Callback):
    """Moves ``data`` (a data module with ``place(device)``) to the trainer's device when a
    trainer sets up; a no-op once it is there, and for data modules that cannot move."""

    def __init__(self, data: pl.LightningDataModule) -> None:
        self.data = data

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        move = getattr(self.data, "place", None)
        if move is not None:
            move(trainer.strategy.root_device)
