"""Per-evaluation pictures: a sample grid with one row per judged class, and the class histogram."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def sample_grid(images: torch.Tensor, labels: np.ndarray, num_classes: int, path: Path, per_row: int = 12) -> None:
    """Row k holds up to ``per_row`` samples the judge labelled k (blank where there are fewer)."""
    from torchvision.utils import save_image

    c, h, w = images.shape[1:]
    grid = torch.zeros(num_classes * per_row, c, h, w, dtype=torch.uint8)
    for k in range(num_classes):
        idx = np.nonzero(labels == k)[0][:per_row]
        grid[k * per_row: k * per_row + len(idx)] = images[torch.from_numpy(idx)]
    save_image(grid.float() / 255.0, path, nrow=per_row, padding=1)


def class_histogram(labels: np.ndarray, train_counts: list[int], path: Path, step: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(train_counts)
    gen = np.bincount(labels, minlength=k) / max(1, len(labels))
    prior = np.asarray(train_counts, dtype=float) / sum(train_counts)
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * k), 3))
    ax.bar(np.arange(k) - 0.2, gen, 0.4, label="generated (judged)")
    ax.bar(np.arange(k) + 0.2, prior, 0.4, label="training prior")
    ax.axhline(1.0 / k, color="k", lw=0.8, ls="--", label="uniform")
    ax.set_xticks(range(k))
    ax.set_xlabel("class")
    ax.set_ylabel("fraction")
    ax.set_title(f"class histogram, step {step}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
