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
WARMUP = 3  # untimed steps first: the first steps of a process are slow


def config(*overrides: str) -> DictConfig:
    """The real Hydra config that ``ssl-lab <overrides>`` would run."""
    _quiet_libraries()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def machine() -> str:
    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{'cuda ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}"
    )


class StepClock(pl.Callback):
    """Lightning's training time, split like ``hand_loop``'s: ``step_seconds`` sums the intervals
    from one training batch's start to the next one's within an epoch (the step, its callbacks
    and logging, and fetching the next batch), from batch ``warmup`` on; ``boundary_seconds``
    sums the intervals that cross an epoch end (one step plus the end-of-epoch work: metrics,
    loggers, the resume checkpoint), validation loops excluded (the hand loop has none)."""

    def __init__(self, warmup: int, count: Callable[[tuple], int]) -> None:
        self.warmup, self.count = warmup, count
        self.step_seconds, self.steps, self.samples = 0.0, 0, 0
        self.boundary_seconds, self.boundaries = 0.0, 0
        self._last: tuple[float, int, int] | None = None  # start, epoch, samples of a batch
        self._validating_since, self._validation = 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._last is not None:
            started, epoch, samples = self._last
            interval = now - started - self._validation
            if epoch == trainer.current_epoch:
                self.step_seconds += interval
                self.steps += 1
                self.samples += samples
            else:
                self.boundary_seconds += interval
                self.boundaries += 1
        self._validation = 0.0
        if trainer.global_step >= self.warmup:
            self._last = (now, trainer.current_epoch, self.count(batch))

    def on_validation_start(self, trainer, pl_module) -> None:
        self._validating_since = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        self._validation += time.perf_counter() - self._validating_since

    @property
    def rate(self) -> float:
        """Samples per second of in-epoch steps."""
        return self.samples / self.step_seconds

    @property
    def epoch_end_seconds(self) -> float:
        """What an epoch end adds to a step, on average."""
        if not self.boundaries:
            return 0.0
        return self.boundary_seconds / self.boundaries - self.step_seconds / self.steps


class Batches:
    """Fixed batches as one loader (Lightning reads a bare list as a list of loaders)."""

    def __init__(self, batches: list) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator:
        return iter(self.batches)


def hand_loop(
    step: Callable[[tuple], torch.Tensor],
    params: Iterable[nn.Parameter],
    optimizer: Callable[..., torch.optim.Optimizer],
    loader: Iterable,
    epochs: int,
    warmup: int,
    count: Callable[[tuple], int],
) -> float:
    """Samples/s of a plain PyTorch loop (batch -> ``step``, the loss -> backward -> optimiser
    step) over ``epochs`` passes of ``loader``, timed like ``StepClock.rate``: intervals between
    the starts of consecutive batches of one epoch, from batch ``warmup`` on."""
    opt = optimizer(list(params))
    seconds, samples, done = 0.0, 0, 0
    for _ in range(epochs):
        last = None
        for batch in loader:
            now = time.perf_counter()
            if last is not None:
                seconds += now - last[0]
                samples += last[1]
            last = (now, count(batch)) if done >= warmup else None
            loss = step(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
    return samples / seconds


def share(
    task: torch.nn.Module, backbone: torch.nn.Module, batches: list, steps: int
) -> tuple[float, float]:
    """(seconds in make_batch, seconds per full step), means over ``steps`` after warm-up."""
    params = list(backbone.parameters()) + list(task.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3)
    make, total = 0.0, 0.0
    for step in range(steps + WARMUP):
        batch = batches[step % len(batches)]
        start = time.perf_counter()
        inputs, targets = task.make_batch(batch)
        made = time.perf_counter()
        loss = task.loss(task(backbone, inputs), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        end = time.perf_counter()
        if step >= WARMUP:
            make += made - start
            total += end - start
    return make / steps, total / steps


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
