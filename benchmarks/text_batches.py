"""MLM pretraining throughput on reviews_zh with length-grouped batches (each cut to its longest
text) against plain shuffled batches padded to the longest of 64 random texts, same process.

    python benchmarks/text_batches.py [--steps 20] [--width 128] [--depth 2]
"""

import argparse
import time

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from ssl_lab.build import build
from ssl_lab.cli import CONF_DIR


def tokens_per_second(loader: DataLoader, backbone, task, steps: int) -> tuple[float, float]:
    """(real tokens/s, mean batch width) over ``steps`` training steps after 3 warm-up steps."""
    opt = torch.optim.AdamW(backbone.parameters(), lr=1e-3)
    batches = iter(loader)
    tokens, widths = 0, []
    for step in range(steps + 3):
        if step == 3:
            start, tokens, widths = time.perf_counter(), 0, []
        ids = next(batches)[0]
        inputs, targets = task.make_batch((ids,))
        loss = task.loss(task(backbone, inputs), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tokens += int((ids != 0).sum())
        widths.append(ids.shape[1])
    return tokens / (time.perf_counter() - start), sum(widths) / len(widths)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=2)
    args = parser.parse_args()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "data=reviews_zh",
                "backbone=transformer",
                "pretext=mlm",
                f"backbone.width={args.width}",
                f"backbone.depth={args.depth}",
            ],
        )
    data = build(cfg, "data")
    data.setup()
    loaders = {
        "grouped": data.unlabelled_dataloader(),
        "plain": DataLoader(
            data.splits["pretrain"],
            batch_size=data.batch_size,
            shuffle=True,
            collate_fn=data.collate_fn,
        ),
    }
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, width {args.width}, "
        f"depth {args.depth}, batch {data.batch_size}"
    )
    rates: dict[str, list[float]] = {}
    for _ in range(2):  # alternate, twice, so drift on a shared machine hits both sides
        for name, loader in loaders.items():
            torch.manual_seed(0)
            backbone = build(cfg, "backbone")
            task = instantiate(
                cfg.pretext.task, feature_dim=backbone.out_dim, vocab=data.tokenizer.vocab
            )
            rate, width = tokens_per_second(loader, backbone, task, args.steps)
            rates.setdefault(name, []).append(rate)
            print(f"{name:8s} {rate:8.0f} tokens/s, mean batch width {width:.0f}")
    best = {k: max(v) for k, v in rates.items()}
    print(
        f"RESULT plain_tps={best['plain']:.0f} grouped_tps={best['grouped']:.0f} "
        f"speedup={best['grouped'] / best['plain']:.2f}"
    )


if __name__ == "__main__":
    main()
