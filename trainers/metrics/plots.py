"""Per-evaluation pictures: a sample grid with one row per class, and the class histogram of the
samples against the training prior. Both are drawn with plain PIL: they are written at every
evaluation, where a matplotlib figure cost more than every metric together; the study's report
draws its own figures (matplotlib) from the logged metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

MIN_TILE = 24  # pixels per sample in the grid
BLUE, ORANGE = (31, 119, 180), (255, 127, 14)  # matplotlib's first two colours, as in the report


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
    """Fraction of samples per judged class next to the training prior, with the uniform line and the
    "dropped" threshold 1/(4K). Plain PIL like the grid (a matplotlib figure cost 50-300 ms)."""
    from PIL import Image, ImageDraw

    k = len(train_counts)
    gen = np.bincount(np.asarray(judged, dtype=np.int64), minlength=k) / max(1, len(judged))
    prior = np.asarray(train_counts, dtype=float) / max(1, sum(train_counts))
    top = max(float(gen.max()), float(prior.max()), 1.0 / k) * 1.1
    slot = max(12, 440 // k)
    left, right, upper, lower = 40, 10, 40, 30
    width, height = left + slot * k + right, 260
    plot_h = height - upper - lower
    picture = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(picture)
    y_of = lambda v: upper + plot_h * (1 - v / top)  # noqa: E731 - a local scale
    for c in range(k):
        x = left + c * slot
        for offset, value, colour in ((0.1, gen[c], BLUE), (0.5, prior[c], ORANGE)):
            draw.rectangle([x + offset * slot, y_of(value), x + (offset + 0.4) * slot, y_of(0)], fill=colour)
        name = str(class_names[c])[:4] if class_names is not None and len(class_names) == k else str(c)
        if k <= 20 or c % max(1, k // 20) == 0:
            draw.text((x + slot * 0.3, height - lower + 4), name, fill="black")
    for value, colour, dash in ((1.0 / k, "black", 6), (1.0 / (4 * k), "red", 2)):
        y = y_of(value)
        for x in range(left, width - right, 2 * dash):
            draw.line([(x, y), (min(x + dash, width - right), y)], fill=colour)
    draw.line([(left, upper), (left, y_of(0)), (width - right, y_of(0))], fill="black")
    for tick in np.linspace(0, top, 5)[:-1]:
        draw.text((2, y_of(tick) - 5), f"{tick:.2g}", fill="black")
    draw.text((left, 4), f"class histogram, step {step}: fraction of samples", fill="black")
    draw.text((left, 18), "generated (judged)", fill=BLUE)
    draw.text((left + 130, 18), "training prior", fill=ORANGE)
    draw.text((left + 230, 18), "-- uniform", fill="black")
    draw.text((left + 310, 18), ".. dropped < 1/(4K)", fill="red")
    picture.save(path, format="PNG")
