"""What the benchmarks share: the real config, a clock for Lightning's training steps, and the
hand-written training loop that the framework is measured against."""

import copy
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch import nn

from ssl_lab.cli import CONF_DIR, _quiet_libraries

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def config(*overrides: str) -> DictConfig:
    """The real Hydra config that ``ssl-lab <overrides>`` would run."""
    _quiet_libraries()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def machine() -> str:
    return (f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"{'cuda ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}")


class StepClock(pl.Callback):
    """Times Lightning's training from the start of batch ``warmup`` to the end of the last
    batch, without the validation loops in between (the hand-written loop has none), and counts
    the samples (``count(batch)``) trained in that window."""

    def __init__(self, warmup: int, count: Callable[[tuple], int]) -> None:
        self.warmup, self.count = warmup, count
        self.seconds, self.samples, self.steps = 0.0, 0, 0
        self._since: float | None = None

    def _pause(self) -> None:
        if self._since is not None:
            self.seconds += time.perf_counter() - self._since
            self._since = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self._since = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step > self.warmup:
            self.samples += self.count(batch)
            self.steps += 1

    def on_validation_start(self, trainer, pl_module) -> None:
        self._pause()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.global_step > self.warmup:
            self._since = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self._pause()

    @property
    def rate(self) -> float:
        return self.samples / self.seconds


class Batches:
    """Fixed batches as one loader (Lightning reads a bare list as a list of loaders)."""

    def __init__(self, batches: list) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator:
        return iter(self.batches)


def cycle(loader: Iterable) -> Iterator:
    while True:
        yield from loader


def hand_loop(step: Callable[[tuple], torch.Tensor], params: Iterable[nn.Parameter],
              optimizer: Callable[..., torch.optim.Optimizer], loader: Iterable, steps: int,
              warmup: int, count: Callable[[tuple], int]) -> float:
    """Samples/s of a plain PyTorch loop: batch -> ``step`` (the loss) -> backward -> optimiser
    step, timed after ``warmup`` steps, over ``loader`` for as many epochs as it takes."""
    opt = optimizer(list(params))
    batches = cycle(loader)
    samples = 0
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        batch = next(batches)
        loss = step(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            samples += count(batch)
    return samples / (time.perf_counter() - start)


def fresh(module: nn.Module) -> nn.Module:
    """An independent copy with the same initial weights, so both sides start equal."""
    return copy.deepcopy(module)


def alternate(rounds: int, sides: dict[str, Callable[[], float]]) -> dict[str, float]:
    """The best of ``rounds`` measurements of each side, taken in turns so that load on a shared
    machine hits both; prints each measurement."""
    best: dict[str, float] = {}
    for r in range(rounds):
        for name, measure in sides.items():
            value = measure()
            print(f"  round {r + 1}  {name:28s} {value:12.1f}", flush=True)
            best[name] = max(best.get(name, 0.0), value)
    return best
