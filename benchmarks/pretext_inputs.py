"""Share of a pretext training step spent making inputs and targets (the corruption).

Each task runs full training steps (make_batch + forward + backward + optimiser step) on the same
batch; make_batch is timed inside the same loop. Usage:
    python benchmarks/pretext_inputs.py [--batch 128] [--size 32] [--channels 1] [--steps 20]
"""

import argparse
import time

import torch

from ssl_lab.backbones.small_cnn import SmallCNN
from ssl_lab.pretext.inpainting import Inpainting
from ssl_lab.pretext.jigsaw import JigsawPuzzle
from ssl_lab.pretext.rotation import RotationPrediction


def tasks(feature_dim: int, channels: int) -> dict[str, torch.nn.Module]:
    return {
        "rotation": RotationPrediction(feature_dim),
        "jigsaw": JigsawPuzzle(feature_dim, num_permutations=100),
        "inpainting_center": Inpainting(feature_dim, channels, mask="center"),
        "inpainting_blocks": Inpainting(feature_dim, channels, mask="random_blocks"),
        "inpainting_irregular": Inpainting(feature_dim, channels, mask="irregular"),
    }


def measure(task: torch.nn.Module, backbone: torch.nn.Module, images: torch.Tensor,
            steps: int) -> tuple[float, float]:
    params = list(backbone.parameters()) + list(task.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3)
    make, total = 0.0, 0.0
    for step in range(steps + 3):  # 3 warm-up steps
        start = time.perf_counter()
        inputs, targets = task.make_batch((images,))
        made = time.perf_counter()
        loss = task.loss(task(backbone, inputs), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        end = time.perf_counter()
        if step >= 3:
            make += made - start
            total += end - start
    return make / steps, total / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    images = torch.randn(args.batch, args.channels, args.size, args.size)
    backbone = SmallCNN(args.channels)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.channels}x{args.size}x{args.size}, small_cnn")
    results = {}
    for name, task in tasks(backbone.out_dim, args.channels).items():
        make, total = measure(task, backbone, images, args.steps)
        results[name] = make / total
        print(f"{name:22s} make_batch {1e3 * make:7.2f} ms  step {1e3 * total:8.2f} ms  "
              f"share {100 * make / total:5.2f}%")
    print("RESULT " + " ".join(f"{k}_share={v:.4f}" for k, v in results.items()))


if __name__ == "__main__":
    main()
