"""SDCLR's self-damaged encoder: global unstructured magnitude masks over the encoder's conv weights,
and a functional pruned forward of the same parameters under the mask.

The masks rank the *effective* conv weights (after spectral normalisation, as the network uses them)
across all layers, and zero the ``prune_ratio`` fraction with the smallest magnitude, exactly that
many (ties broken by position). The pruned forward calls ``torch.func.functional_call`` with each
conv's raw weight (``parametrizations.weight.original``) multiplied by its mask — no model copy, no
mode flag — so gradients reach the dense parameters through the mask. The spectral-norm power-iteration
buffers are passed as copies, so the pruned pass never moves the dense network's estimates.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call


def prunable_convs(encoder: nn.Module) -> dict[str, nn.Conv2d]:
    """Conv layers of the encoder by module name (heads are not pruned)."""
    return {name: m for name, m in encoder.named_modules() if isinstance(m, nn.Conv2d)}


def _raw_weight_name(module_name: str, module: nn.Module) -> str:
    prefix = f"{module_name}." if module_name else ""
    if hasattr(module, "parametrizations") and "weight" in module.parametrizations:
        return f"{prefix}parametrizations.weight.original"
    return f"{prefix}weight"


@torch.no_grad()
def effective_weights(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """Each conv's weight as the forward uses it, read without a power-iteration step."""
    was_training = encoder.training
    encoder.eval()  # in eval mode spectral norm uses its stored vectors and updates nothing
    try:
        return {name: m.weight.detach().clone() for name, m in prunable_convs(encoder).items()}
    finally:
        encoder.train(was_training)


@torch.no_grad()
def magnitude_masks(weights: dict[str, torch.Tensor], prune_ratio: float) -> dict[str, torch.Tensor]:
    """Global masks keeping the ``1 - prune_ratio`` largest-magnitude weights (exactly k removed)."""
    flat = torch.cat([w.abs().flatten() for w in weights.values()])
    k = int(round(prune_ratio * flat.numel()))
    keep = torch.ones_like(flat, dtype=torch.bool)
    if k > 0:
        keep[torch.argsort(flat, stable=True)[:k]] = False
    masks, start = {}, 0
    for name, w in weights.items():
        masks[name] = keep[start:start + w.numel()].view_as(w).to(w.dtype)
        start += w.numel()
    return masks


def sparsity(masks: dict[str, torch.Tensor]) -> float:
    total = sum(m.numel() for m in masks.values())
    return float(sum((m == 0).sum().item() for m in masks.values()) / max(1, total))


def pruned_forward(encoder: nn.Module, masks: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The encoder on ``x`` with every conv's raw weight under its mask (functional, gradients flow)."""
    convs = prunable_convs(encoder)
    overrides: dict[str, torch.Tensor] = {}
    for name, module in convs.items():
        raw = _raw_weight_name(name, module)
        overrides[raw] = encoder.get_parameter(raw) * masks[name]
    for name, buf in encoder.named_buffers():
        if name.endswith(("_u", "_v")):  # spectral-norm vectors: the pruned pass works on copies
            overrides[name] = buf.clone()
    return functional_call(encoder, overrides, (x,))
