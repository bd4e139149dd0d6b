"""Per-evaluation pictures: a sample grid with one row per class, and the class histogram of the
samples against the training prior. The grid is plain PIL; matplotlib (the histogram) is imported
inside the function and drawn through an Agg canvas without pyplot: no global backend switch, safe
in any worker."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

MIN_TILE = 24  # pixels per sample in the grid


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def sample_grid(rows: Sequence[Sequence[torch.Tensor]], shape: tuple[int, int, int], path: Path,
                per_row: int = 12, pad: int = 1) -> None:
    """Row ``k`` holds up to ``per_row`` uint8 C x H x W samples of class ``k`` (blank where there are
    fewer, so a class G never drew shows as an empty row), each row labelled with its class.

    Drawn with PIL, not matplotlib: it is written at every evaluation, and a figure with axes cost
    ~50 ms of an evaluation that has ~100 ms to spend. Tiles are scaled up (nearest neighbour) to at
    least ``MIN_TILE`` pixels so 8-16 px samples stay visible.
    """
    from PIL import Image, ImageDraw

    c, h, w = shape
    k = len(rows)
    scale = max(1, -(-MIN_TILE // max(h, w)))  # ceil
    th, tw, label_w = h * scale, w * scale, 22
    canvas = np.full((k * (th + pad) + pad, label_w + per_row * (tw + pad) + pad, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for i, img in enumerate(list(row)[:per_row]):
            pix = img.permute(1, 2, 0).numpy()
            if c == 1:
                pix = np.repeat(pix, 3, axis=2)
            pix = pix.repeat(scale, axis=0).repeat(scale, axis=1)
            y, x = pad + r * (th + pad), label_w + pad + i * (tw + pad)
            canvas[y:y + th, x:x + tw] = pix
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    for r in range(k):
        draw.text((2, pad + r * (th + pad) + th // 2 - 5), str(r), fill=(0, 0, 0))
    picture.save(path, format="PNG")


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
    # fixed margins: tight_layout measures every text box and cost 40% of the figure's time
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.16 if k <= 10 else 0.22, top=0.9)
    fig.savefig(path, dpi=100)
