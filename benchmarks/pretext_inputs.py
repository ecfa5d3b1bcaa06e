"""Making pretext inputs and targets (the corruption), two figures, in one process:

1. share: the part of a full training step (make_batch + forward + backward + AdamW step) spent
   in ``make_batch``, timed inside the same loop: image tasks with small_cnn on batches of 128
   digits (1x32x32), MAE with the default vit_tiny, MLM with the default text transformer on
   batches of 64 reviews_zh texts.
2. against the usual way: the same corruption made per example in a ``Dataset.__getitem__`` with
   PIL / torchvision transforms from uint8 images (as torchvision datasets serve them), batched by
   a ``DataLoader``, against ``make_batch`` on the in-memory batch; for MLM, against Hugging
   Face's ``DataCollatorForLanguageModeling`` on the same texts (if transformers is installed).

    python benchmarks/pretext_inputs.py [--steps 15]
"""

import argparse
import time

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from common import WARMUP, config, machine, share
from hydra.utils import instantiate
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ssl_lab.build import build
from ssl_lab.pretext.inpainting import Inpainting
from ssl_lab.pretext.jigsaw import JigsawPuzzle, permutation_set
from ssl_lab.pretext.mae import MaskedAutoencoder
from ssl_lab.pretext.rotation import RotationPrediction
from ssl_lab.pretext.simclr import SimCLR


def image_tasks(feature_dim: int, channels: int) -> dict[str, torch.nn.Module]:
    return {
        "rotation": RotationPrediction(feature_dim),
        "jigsaw": JigsawPuzzle(feature_dim, num_permutations=100),
        "inpainting_center": Inpainting(feature_dim, channels, mask="center"),
        "inpainting_blocks": Inpainting(feature_dim, channels, mask="random_blocks"),
        "inpainting_irregular": Inpainting(feature_dim, channels, mask="irregular"),
        "simclr": SimCLR(feature_dim),
    }


class PerExample(Dataset):
    """The usual way: uint8 images, one PIL image per example, torchvision transforms."""

    def __init__(self, images: np.ndarray, kind: str, mean: float, std: float) -> None:
        self.images, self.kind, self.mean, self.std = images, kind, mean, std
        self.permutations = permutation_set(100, 3, 0)
        self.view = T.Compose(  # SimCLR's views as torchvision makes them, one image at a time
            [
                T.RandomResizedCrop(32, scale=(0.2, 1.0), antialias=True),
                T.RandomApply([T.ColorJitter(0.4, 0.4)], p=0.8),
            ]
        )

    def __len__(self) -> int:
        return len(self.images)

    def _tensor(self, image: Image.Image) -> torch.Tensor:
        return TF.normalize(TF.to_tensor(image), [self.mean], [self.std])

    def __getitem__(self, i: int):
        image = Image.fromarray(self.images[i])
        if self.kind == "rotation":  # all four rotations of the example
            return (
                torch.stack([self._tensor(image.rotate(90 * k)) for k in range(4)]),
                torch.arange(4),
            )
        if self.kind == "jigsaw":  # 3x3 tiles of 8 px at random offsets in 10 px cells
            offsets = np.random.randint(0, 3, (9, 2))
            tiles = []
            for cell, (dy, dx) in enumerate(offsets):
                top, left = 10 * (cell // 3) + dy, 10 * (cell % 3) + dx
                tile = TF.to_tensor(image.crop((left, top, left + 8, top + 8)))
                tiles.append((tile - tile.mean()) / (tile.std() + 1e-5))
            label = np.random.randint(100)
            return torch.stack(tiles)[self.permutations[label]], label
        if self.kind == "simclr":  # two views of the example
            return self._tensor(self.view(image)), self._tensor(self.view(image))
        x = self._tensor(image)  # inpainting, center: the central quarter hidden
        hidden = torch.zeros_like(x, dtype=torch.bool)
        hidden[:, 8:24, 8:24] = True
        return x.masked_fill(hidden, 0.0), x, hidden


def per_batch_seconds(make, rounds: int) -> float:
    times = []
    for _ in range(rounds + WARMUP):
        start = time.perf_counter()
        make()
        times.append(time.perf_counter() - start)
    return min(times[WARMUP:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args()
    print(machine())
    result = {}

    # 1. share of the step, images
    data = instantiate(config("data=digits").data)
    data.setup()
    loader = data.unlabelled_dataloader()
    batches = [b for _, b in zip(range(4), loader)]
    torch.manual_seed(0)
    cfg = config("backbone=small_cnn")
    print(
        f"images: batch {data.batch_size} digits 1x32x32, small_cnn; text: batch 64 reviews_zh, "
        f"transformer defaults"
    )
    for name, task in image_tasks(128, 1).items():
        backbone = build(cfg, "backbone")
        make, total = share(task, backbone, batches, args.steps)
        result[f"{name}_share"] = make / total
        print(
            f"{name:22s} make_batch {1e3 * make:7.2f} ms  step {1e3 * total:8.2f} ms  "
            f"share {100 * make / total:5.2f}%"
        )

    # 1. share of the step, MAE on the default vit_tiny
    vit_cfg = config("backbone=vit_tiny")
    vit = build(vit_cfg, "backbone")
    mae = MaskedAutoencoder(vit.out_dim, 1, 32, vit.patch_size)
    make, total = share(mae, vit, batches, args.steps)
    result["mae_share"] = make / total
    print(
        f"{'mae (vit_tiny)':22s} make_batch {1e3 * make:7.2f} ms  step {1e3 * total:8.2f} ms  "
        f"share {100 * make / total:5.2f}%"
    )

    # 1. share of the step, MLM
    text_cfg = config("data=reviews_zh", "backbone=transformer", "pretext=mlm")
    text = instantiate(text_cfg.data)
    text.setup()
    text_batches = [b for _, b in zip(range(4), text.unlabelled_dataloader())]
    backbone = build(text_cfg, "backbone")
    mlm = instantiate(
        text_cfg.pretext.task, feature_dim=backbone.out_dim, vocab=text.tokenizer.vocab
    )
    make, total = share(mlm, backbone, text_batches, args.steps)
    result["mlm_share"] = make / total
    print(
        f"{'mlm':22s} make_batch {1e3 * make:7.2f} ms  step {1e3 * total:8.2f} ms  "
        f"share {100 * make / total:5.2f}%"
    )

    # 2. against per-example PIL / torchvision (and HF's collator for MLM)
    x = data.splits["train"].tensors[0]
    mean, std = float(data.mean[0]), float(data.std[0])
    uint8 = ((x[:, 0] * std + mean).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    tasks = image_tasks(128, 1)
    print("per batch: per-example DataLoader (PIL) vs batched make_batch")
    for name in ("rotation", "jigsaw", "inpainting_center", "simclr"):
        kind = name.split("_")[0]
        slow_loader = DataLoader(
            PerExample(uint8, kind, mean, std), batch_size=data.batch_size, shuffle=True
        )
        slow = per_batch_seconds(lambda: next(iter(slow_loader)), 5)
        fast = per_batch_seconds(lambda: tasks[name].make_batch(next(iter(loader))), 5)
        result[f"{name}_per_example_ratio"] = slow / fast
        print(
            f"{name:22s} per-example {1e3 * slow:7.2f} ms  batched (incl. fetch) "
            f"{1e3 * fast:6.2f} ms  {slow / fast:5.1f}x"
        )
    try:
        from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast
    except ImportError:
        print("transformers not installed: no HF collator comparison")
    else:
        tok = text.tokenizer
        hf = PreTrainedTokenizerFast(
            tokenizer_object=tok.tokenizer,
            **{f"{role}_token": token for role, token in tok.roles.items() if token},
        )
        collator = DataCollatorForLanguageModeling(hf, mlm_probability=0.15)
        pad = tok.ids["pad"]
        ids = text_batches[0][0]
        rows = [{"input_ids": row[row != pad].tolist()} for row in ids]
        slow = per_batch_seconds(lambda: collator(rows), 10)
        fast = per_batch_seconds(lambda: mlm.make_batch((ids,)), 10)
        result["mlm_hf_collator_ratio"] = slow / fast
        print(
            f"{'mlm':22s} HF collator {1e3 * slow:7.2f} ms  make_batch {1e3 * fast:6.2f} ms  "
            f"{slow / fast:5.1f}x"
        )
    print("RESULT " + " ".join(f"{k}={v:.4f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
