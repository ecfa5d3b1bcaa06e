"""SmallCNN training throughput with and without channels-last memory format, same process.

python benchmarks/channels_last.py [--batch 512] [--size 32] [--steps 8]
"""

import argparse
import time

import torch
import torch.nn.functional as F

from ssl_lab.backbones.small_cnn import SmallCNN


def images_per_second(channels_last: bool, batch: int, size: int, steps: int) -> float:
    torch.manual_seed(0)
    model = SmallCNN(1, (16, 32, 64, 128))
    head = torch.nn.Linear(model.out_dim, 4)
    if not channels_last:  # SmallCNN is channels-last by default: undo it for the comparison
        model = model.to(memory_format=torch.contiguous_format)
        model.forward_features = lambda x, m=model: _contiguous_forward(m, x)
    opt = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=1e-3)
    x, y = torch.randn(batch, 1, size, size), torch.randint(0, 4, (batch,))
    for step in range(steps + 2):
        if step == 2:
            start = time.perf_counter()
        loss = F.cross_entropy(head(model(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - start)


def _contiguous_forward(model: SmallCNN, x: torch.Tensor) -> torch.Tensor:
    for stage in model.stages:
        x = stage(x)
    return x


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rates = {}
    for _ in range(2):  # alternate, twice, so drift on a shared machine hits both sides
        for layout in ("contiguous", "channels_last"):
            rates.setdefault(layout, []).append(
                images_per_second(layout == "channels_last", args.batch, args.size, args.steps)
            )
    best = {k: max(v) for k, v in rates.items()}
    for layout, rate in best.items():
        print(f"{layout:14s} {rate:8.0f} images/s (best of {len(rates[layout])})")
    print(
        f"RESULT contiguous_ips={best['contiguous']:.0f} channels_last_ips="
        f"{best['channels_last']:.0f} speedup={best['channels_last'] / best['contiguous']:.2f}"
    )


if __name__ == "__main__":
    main()
