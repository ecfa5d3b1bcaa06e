"""One PNG of what a pretext task sees: rows of captioned images, drawn with matplotlib."""

from pathlib import Path

import torch

from ssl_lab.atomic import atomic_path

Picture = list[list[tuple[torch.Tensor, str]]]  # rows of (image (C, H, W), caption)


def _displayable(image: torch.Tensor, low: float, high: float):
    image = ((image.float() - low) / max(high - low, 1e-6)).clamp(0, 1)
    return image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()


def save_picture(rows: Picture, path: str | Path, title: str) -> None:
    """Each row is scaled to [0, 1] by its own min and max, so a masked input, its reconstruction
    and the original share one scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = max(len(row) for row in rows)
    fig, axes = plt.subplots(
        len(rows), n_cols, figsize=(1.8 * n_cols, 1.9 * len(rows)), squeeze=False
    )
    for r, row in enumerate(rows):
        low = min(float(img.min()) for img, _ in row)
        high = max(float(img.max()) for img, _ in row)
        for c in range(n_cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(row):
                image, caption = row[c]
                ax.imshow(_displayable(image, low, high), cmap="gray", interpolation="nearest")
                ax.set_title(caption, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
