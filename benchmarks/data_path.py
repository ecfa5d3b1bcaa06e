"""The in-memory data path: batches fetched by one indexing per tensor (``data.batch_fetch=true``,
the default) against the usual per-example ``DataLoader`` (``__getitem__`` per image, then
``default_collate`` stacks them), over the same tensors, sampler and batch size, in one process.
One pretraining epoch of each dataset's loader, nothing else; the share of a training step is
taken against the step time measured here for rotation + small_cnn.

digits always; MNIST and CIFAR-10 when ``../shared/data`` has them (CIFAR-10's JPEGs are decoded
once into ``outputs/cache/data`` on the first run).

    python benchmarks/data_path.py [--rounds 3]
"""

import argparse
import time

import torch
from common import SHARED_DATA, alternate, config, machine, share
from hydra.utils import instantiate

from ssl_lab.build import build


def datasets() -> dict[str, list[str]]:
    found = {"digits": ["data=digits"]}
    if (SHARED_DATA / "mnist.npz").is_file():
        found["mnist"] = ["data=npz", f"paths.data_dir={SHARED_DATA}"]
    if (SHARED_DATA / "cifar10-jpeg.tar.gz").is_file():
        found["cifar10"] = ["data=image_folder", f"paths.data_dir={SHARED_DATA}"]
    return found


def epoch_rate(data, fetch: bool) -> float:
    """Images/s of one pass over the pretraining loader."""
    data.batch_fetch = fetch
    loader = data.unlabelled_dataloader()
    torch.manual_seed(0)
    start, n = time.perf_counter(), 0
    for x, _ in loader:
        n += len(x)
    return n / (time.perf_counter() - start)


def step_seconds(data) -> float:
    """Seconds of one rotation + small_cnn training step on batches of this data (for the share)."""
    cfg = config("backbone=small_cnn", "pretext=rotation", f"data.channels={data.channels}")
    torch.manual_seed(0)
    backbone = build(cfg, "backbone")
    task = instantiate(cfg.pretext.task, feature_dim=backbone.out_dim)
    batches = [b for _, b in zip(range(4), data.unlabelled_dataloader())]
    return share(task, backbone, batches, 8)[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(machine())
    result = {}
    for name, overrides in datasets().items():
        data = instantiate(config(*overrides).data)
        data.setup()
        n = len(data.unlabelled_dataloader().dataset)
        print(
            f"{name}: {n} pretraining images {tuple(data.splits['train'].tensors[0].shape[1:])},"
            f" batch {data.batch_size}"
        )
        best = alternate(
            args.rounds,
            {
                "per-example (images/s)": lambda: epoch_rate(data, False),
                "batch_fetch (images/s)": lambda: epoch_rate(data, True),
            },
        )
        slow, fast = best["per-example (images/s)"], best["batch_fetch (images/s)"]
        step = step_seconds(data)
        per_batch = {k: data.batch_size / v for k, v in (("slow", slow), ("fast", fast))}
        print(
            f"{name}: speedup {fast / slow:.1f}x; per batch {1e3 * per_batch['slow']:.2f} ms vs "
            f"{1e3 * per_batch['fast']:.2f} ms, against a {1e3 * step:.0f} ms rotation step: "
            f"{100 * per_batch['slow'] / step:.1f}% vs {100 * per_batch['fast'] / step:.2f}%"
        )
        result[f"{name}_speedup"] = fast / slow
        result[f"{name}_share_per_example"] = per_batch["slow"] / step
        result[f"{name}_share_batch_fetch"] = per_batch["fast"] / step
    print("RESULT " + " ".join(f"{k}={v:.4f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
