"""Framework overhead: ssl-lab's pretext training (``pipeline.pretrain``: Lightning, logging,
metrics, the non-finite guard, per-epoch resume checkpoint) against a hand-written PyTorch loop
doing the same math (same task, backbone, initial weights, optimiser and loader) in the same
process.

Three figures per backbone:
- steps: samples/s of the steps inside an epoch, after warm-up (``common.StepClock`` and
  ``hand_loop`` time them the same way): Lightning's per-step cost. Target >= 0.95.
- epoch end: what crossing an epoch end adds, in seconds (metrics, loggers, the resume
  checkpoint; validation excluded): a fixed cost that long epochs amortise and these short
  benchmark epochs (8-10 batches) do not.
- phase: the hand loop's wall time against the whole ``pretrain`` call, with its validation,
  the kNN monitor, pictures and the hand-off file: what a user waits for, at these short epochs.

    python benchmarks/framework_overhead.py [--backbones small_cnn resnet18] [--rounds 2]
"""

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
from common import StepClock, alternate, config, fresh, hand_loop, machine
from hydra.utils import instantiate
from pytorch_lightning.loggers import CSVLogger

from ssl_lab.build import build
from ssl_lab.pipeline import pretrain, trainer_factory

# backbone -> (batch size, training batches per epoch, epochs, warm-up steps)
SETTINGS = {"small_cnn": (128, None, 4, 3), "resnet18": (32, 8, 2, 2)}


def images(batch: tuple) -> int:
    return len(batch[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbones", nargs="+", default=list(SETTINGS))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(machine())
    result = {}
    for name in args.backbones:
        batch, batches, epochs, warmup = SETTINGS[name]
        tmp = Path(tempfile.mkdtemp(prefix="ssl_lab_bench_"))
        overrides = [
            "data=digits",
            f"backbone={name}",
            "pretext=rotation",
            "seed=0",
            f"data.batch_size={batch}",
            f"pretext.epochs={epochs}",
            f"paths.output_dir={tmp}",
            f"paths.run_dir={tmp}/run",
        ]
        if batches:
            overrides += [f"+trainer.limit_train_batches={batches}"]
        cfg = config(*overrides)
        data = build(cfg, "data")
        data.setup()
        loader = data.unlabelled_dataloader()
        per_epoch = min(batches or len(loader), len(loader))
        steps = epochs * per_epoch - warmup
        torch.manual_seed(0)
        backbone0 = build(cfg, "backbone")
        task0 = instantiate(cfg.pretext.task, feature_dim=backbone0.out_dim)
        print(
            f"{name}: batch {batch} digits 1x32x32 (x4 rotations), {epochs} epochs of "
            f"{per_epoch} batches, {steps} timed steps after {warmup}"
        )
        phase: dict[str, float] = {}
        epoch_end: dict[str, float] = {}

        def framework() -> float:
            clock = StepClock(warmup, images)
            loggers = [CSVLogger(str(tmp / "csv"))]
            run = config(*overrides, f"paths.cache_dir={tmp}/cache{time.monotonic_ns()}")
            make_trainer = trainer_factory(run, loggers, tmp / "lightning", (clock,))
            started = time.perf_counter()
            pretrain(run, fresh(backbone0), data, make_trainer, tmp / f"out{time.monotonic_ns()}")
            phase["framework"] = min(
                phase.get("framework", math.inf), time.perf_counter() - started
            )
            assert clock.steps == steps - epochs, (clock.steps, steps)  # in-epoch intervals
            epoch_end["framework"] = min(
                epoch_end.get("framework", math.inf), clock.epoch_end_seconds
            )
            return clock.rate

        def hand() -> float:
            backbone, task = fresh(backbone0), fresh(task0)
            backbone.train(), task.train()

            def step(batch: tuple) -> torch.Tensor:
                inputs, targets = task.make_batch(batch)
                return task.loss(task(backbone, inputs), targets)

            optimizer = instantiate(cfg.pretext.optimizer)
            started = time.perf_counter()
            rate = hand_loop(
                step,
                [*backbone.parameters(), *task.parameters()],
                lambda p: optimizer(p, lr=cfg.pretext.lr),
                _limited(loader, per_epoch),
                epochs,
                warmup,
                images,
            )
            phase["hand"] = min(phase.get("hand", math.inf), time.perf_counter() - started)
            return rate

        best = alternate(
            args.rounds, {"ssl-lab (images/s)": framework, "hand-written (images/s)": hand}
        )
        ratio = best["ssl-lab (images/s)"] / best["hand-written (images/s)"]
        hand_all = phase["hand"]  # warm-up included, as in pretrain()
        print(
            f"{name}: steps ratio {ratio:.3f}; an epoch end adds "
            f"{epoch_end['framework']:.2f} s; whole pretrain() {phase['framework']:.1f} s "
            f"vs hand loop {hand_all:.1f} s for the same steps (ratio "
            f"{hand_all / phase['framework']:.3f})"
        )
        result[f"{name}_steps"] = ratio
        result[f"{name}_epoch_end_s"] = epoch_end["framework"]
        result[f"{name}_phase"] = hand_all / phase["framework"]
    print("RESULT " + " ".join(f"{k}={v:.3f}" for k, v in result.items()))


def _limited(loader, batches: int):
    """The first ``batches`` batches of each pass over ``loader`` (Lightning's
    ``limit_train_batches``)."""

    class Limited:
        def __iter__(self):
            for i, batch in enumerate(loader):
                if i == batches:
                    return
                yield batch

    return Limited()


if __name__ == "__main__":
    main()
