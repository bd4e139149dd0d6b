"""Per-evaluation pictures: a sample grid with one row per judged class, and the class histogram of
the samples against the training prior. matplotlib is imported here, inside the functions, and
drawn through an Agg canvas without pyplot: no global backend switch, safe in any worker."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def sample_grid(rows: Sequence[Sequence[torch.Tensor]], shape: tuple[int, int, int], path: Path,
                per_row: int = 12, pad: int = 1) -> None:
    """Row ``k`` holds up to ``per_row`` uint8 C x H x W samples the judge labelled ``k`` (blank where
    it labelled fewer, so a dropped class shows as an empty row)."""
    c, h, w = shape
    k = len(rows)
    canvas = np.full((k * (h + pad) + pad, per_row * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for i, img in enumerate(list(row)[:per_row]):
            pix = img.permute(1, 2, 0).numpy()
            if c == 1:
                pix = np.repeat(pix, 3, axis=2)
            y, x = pad + r * (h + pad), pad + i * (w + pad)
            canvas[y:y + h, x:x + w] = pix
    tile = 0.45  # inches per sample, whatever the resolution
    fig = _figure(per_row * tile * w / max(h, w) + 0.7, k * tile * h / max(h, w) + 0.4)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(canvas, interpolation="nearest")
    ax.set_yticks([pad + r * (h + pad) + h / 2 for r in range(k)])
    ax.set_yticklabels([str(r) for r in range(k)], fontsize=6)
    ax.set_xticks([])
    ax.set_ylabel("judged class", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def class_histogram(judged: np.ndarray, train_counts: Sequence[int], path: Path, step: int,
                    class_names: Sequence[str] | None = None) -> None:
    """Fraction of samples per judged class next to the training prior, with the uniform line."""
    k = len(train_counts)
    gen = np.bincount(np.asarray(judged, dtype=np.int64), minlength=k) / max(1, len(judged))
    prior = np.asarray(train_counts, dtype=float) / max(1, sum(train_counts))
    fig = _figure(max(5.0, 0.45 * k), 3.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(np.arange(k) - 0.2, gen, 0.4, label="generated (judged)")
    ax.bar(np.arange(k) + 0.2, prior, 0.4, label="training prior")
    ax.axhline(1.0 / k, color="k", lw=0.8, ls="--", label="uniform")
    ax.axhline(1.0 / (4 * k), color="r", lw=0.8, ls=":", label="dropped below 1/(4K)")
    ax.set_xticks(range(k))
    if class_names is not None and len(class_names) == k and k <= 20:
        ax.set_xticklabels([str(n)[:10] for n in class_names], fontsize=7, rotation=45 if k > 10 else 0)
    ax.set_xlabel("class")
    ax.set_ylabel("fraction of samples")
    ax.set_title(f"class histogram, step {step}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
