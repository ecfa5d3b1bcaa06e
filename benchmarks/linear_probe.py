"""Linear probe with features extracted once (``downstream=linear_probe``) against a linear head
on a frozen backbone that recomputes the features of every batch in every epoch
(``downstream=finetune downstream.freeze=frozen``, the same head, epochs, examples per epoch
and learning rate), on the same backbone and labelled subset, in one process.

The two are not the same arithmetic to the last bit: the probe standardises its features and
finetune applies the data's batch augmentation, so their accuracies are printed too.

    python benchmarks/linear_probe.py [--backbones small_cnn resnet18] [--rounds 2]
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import alternate, config, fresh, machine
from hydra.utils import instantiate

from ssl_lab.build import build
from ssl_lab.pipeline import trainer_factory

SIDES = {
    "extract once": ["downstream=linear_probe"],
    "every epoch": ["downstream=finetune", "downstream.freeze=frozen"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbones", nargs="+", default=["small_cnn", "resnet18"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    print(machine())
    result = {}
    for name in args.backbones:
        tmp = Path(tempfile.mkdtemp(prefix="ssl_lab_bench_"))
        common = [
            "data=digits",
            f"backbone={name}",
            "pretext=none",
            "data.labels_per_class=50",
            f"downstream.epochs={args.epochs}",
            "downstream.lr=2e-3",
            f"paths.output_dir={tmp}",
            f"paths.run_dir={tmp}/run",
        ]
        cfgs = {side: config(*common, *extra) for side, extra in SIDES.items()}
        data = instantiate(cfgs["extract once"].data)
        data.setup()
        torch.manual_seed(0)
        backbone0 = build(cfgs["extract once"], "backbone")
        scores: dict[str, float] = {}

        def measure(side: str):
            def seconds_inverse() -> float:
                cfg = cfgs[side]
                torch.manual_seed(0)
                started = time.perf_counter()
                metrics = build(cfg, "downstream").evaluate(
                    fresh(backbone0), data, trainer_factory(cfg, [], tmp / "lightning")
                )
                seconds = time.perf_counter() - started
                scores[side] = metrics["score"]
                return 1 / seconds  # alternate() keeps the best: the shortest time

            return seconds_inverse

        print(
            f"{name}: digits, {data.n_labels} labels, {args.epochs} epochs of "
            f"{len(data.train_dataloader().sampler)} examples (runs/s)"
        )
        best = alternate(args.rounds, {side: measure(side) for side in SIDES})
        once, every = 1 / best["extract once"], 1 / best["every epoch"]
        print(
            f"{name}: extract once {once:.1f} s (test acc {scores['extract once']:.3f}), "
            f"every epoch {every:.1f} s (test acc {scores['every epoch']:.3f}): "
            f"{every / once:.2f}x"
        )
        result[f"{name}_speedup"] = every / once
    print("RESULT " + " ".join(f"{k}={v:.2f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
