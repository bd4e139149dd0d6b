"""SDCLR's self-damaged encoder: magnitude masks over the encoder's conv weights, and a functional
pruned forward of the same parameters under the masks (no model copy, no mode flag).

Where the mask applies, with spectral norm. Every conv of the encoder is spectral-normalised: the
dense forward uses ``W / sigma(W)``. The pruned forward uses ``M ⊙ (W / sigma(W))`` — the dense
network's own normalised weight with the pruned entries removed, sigma computed on the dense ``W``.
Masking the raw weight instead would renormalise it, ``(M ⊙ W) / sigma(M ⊙ W)``, and undo much of the
damage SDCLR relies on (at 16 x 16 and ``prune_ratio = 0.9`` that rescales the last conv by about 3x).
The caller runs the dense and the pruned pass inside ``torch.nn.utils.parametrize.cached()``, so both
read the very same ``W / sigma(W)`` of this step and spectral norm's power iteration advances once.

How the mask is drawn: layer-wise. Each conv loses the fraction ``prune_ratio`` of its own weights
with the smallest magnitude (``round(prune_ratio * n)``, ties broken by position) and always keeps at
least one. SDCLR (``prune/mask.py``) ranks raw weights globally over all layers, but its convs are
followed by BatchNorm; here no BatchNorm follows them and spectral norm makes each layer's weight scale
a property of its shape (a large conv has small entries), so a global ranking of the normalised weights
at 0.9 removes every weight of the largest conv at 32 x 32 and the pruned pass is 0/0. Within a layer,
raw and normalised magnitudes rank alike, so the masks are drawn from the raw weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def prunable_convs(encoder: nn.Module) -> dict[str, nn.Conv2d]:
    """The encoder's conv layers by their name in ``encoder.net`` (the heads are never pruned)."""
    return {name: m for name, m in encoder.net.named_children() if isinstance(m, nn.Conv2d)}


def raw_weight(conv: nn.Conv2d) -> torch.Tensor:
    """The conv's weight before spectral normalisation (its trained parameter)."""
    if hasattr(conv, "parametrizations") and "weight" in conv.parametrizations:
        return conv.parametrizations.weight.original
    return conv.weight


@torch.no_grad()
def magnitude_masks(weights: dict[str, torch.Tensor], prune_ratio: float) -> dict[str, torch.Tensor]:
    """Per layer, a 0/1 mask removing ``min(round(prune_ratio * n), n - 1)`` smallest-magnitude weights."""
    masks = {}
    for name, w in weights.items():
        n = w.numel()
        k = min(int(round(prune_ratio * n)), n - 1)
        keep = torch.ones(n, dtype=torch.bool, device=w.device)
        if k > 0:
            keep[torch.argsort(w.detach().abs().flatten(), stable=True)[:k]] = False
        masks[name] = keep.view_as(w).to(w.dtype)
    return masks


def encoder_masks(encoder: nn.Module, prune_ratio: float) -> dict[str, torch.Tensor]:
    """The masks of the encoder's current weights."""
    return magnitude_masks({name: raw_weight(conv) for name, conv in prunable_convs(encoder).items()}, prune_ratio)


def sparsity(masks: dict[str, torch.Tensor]) -> float:
    total = sum(m.numel() for m in masks.values())
    return float(sum((m == 0).sum().item() for m in masks.values()) / max(1, total))


def pruned_forward(encoder: nn.Module, masks: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The encoder on ``x`` with every conv's weight ``M ⊙ (W / sigma(W))``; gradients reach the dense
    parameters through the mask. Run it inside ``parametrize.cached()`` together with the dense pass."""
    h = x
    for name, layer in encoder.net.named_children():
        if name in masks:
            h = F.conv2d(h, layer.weight * masks[name], layer.bias, layer.stride, layer.padding,
                         layer.dilation, layer.groups)
        else:
            h = layer(h)
    return h.flatten(1)
