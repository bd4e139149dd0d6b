"""SDCLR's self-damaged encoder: global unstructured magnitude masks over the encoder's conv weights,
and a functional pruned forward of the same parameters under the mask.

Where the mask applies, with spectral norm. Each conv of the encoder is spectral-normalised
(``parametrizations.weight.original`` = W, the forward uses W / sigma(W)).
- Masks rank the *effective* weights W / sigma (what the dense forward uses; sigma from the current
  power-iteration vectors, nothing updated) globally over all convs and zero the ``prune_ratio``
  fraction with the smallest magnitude: exactly ``round(prune_ratio * n)`` weights, ties broken by
  position. Within a layer this is the raw-magnitude order; across layers it compares the scales the
  network really uses, which raw magnitudes under SN do not.
- The pruned forward masks the raw weight ``parametrizations.weight.original`` (overridden through
  ``torch.func.functional_call``: no model copy, no mode flag), so spectral norm is applied to the
  masked weight and gradients reach the dense parameters through the mask.
- Power iteration: the pruned pass gets *copies* of the spectral-norm vectors ``_u``/``_v``. Its one
  power-iteration step runs on the copies and is discarded; the dense buffers advance only in dense
  forwards, exactly as in ContraD, and a resume (which restores them from D's state dict) stays
  bit-exact with no extra state. A caller that runs the pruned pass *before* the step's dense pass
  starts it from the very vectors the dense pass starts from, so at ``prune_ratio = 0`` the pruned
  pass computes the dense pass's sigma, weights and features exactly.
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
    if _spectral_norm(module) is not None:
        return f"{prefix}parametrizations.weight.original"
    return f"{prefix}weight"


def _spectral_norm(module: nn.Module):
    """The module's spectral-norm parametrization of ``weight`` (the one holding ``_u``/``_v``), or None."""
    if hasattr(module, "parametrizations") and "weight" in module.parametrizations:
        parametrization = module.parametrizations.weight[0]
        if hasattr(parametrization, "_u"):
            return parametrization
    return None


@torch.no_grad()
def effective_weights(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """Each conv's weight as the dense forward uses it (W / sigma), read without a power-iteration step."""
    out = {}
    for name, module in prunable_convs(encoder).items():
        sn = _spectral_norm(module)
        if sn is None:
            out[name] = module.weight.detach().clone()
            continue
        raw = module.parametrizations.weight.original
        # spectral norm's own sigma estimate from its stored vectors (its eval-mode branch)
        sigma = torch.vdot(sn._u, torch.mv(sn._reshape_weight_to_matrix(raw), sn._v))
        out[name] = raw / sigma
    return out


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
    """The encoder on ``x`` with every conv's raw weight under its mask (functional; gradients reach the
    dense parameters). Spectral norm runs on the masked weight from copies of the dense vectors, so no
    buffer of ``encoder`` changes."""
    overrides: dict[str, torch.Tensor] = {}
    for name, module in prunable_convs(encoder).items():
        raw = _raw_weight_name(name, module)
        overrides[raw] = encoder.get_parameter(raw) * masks[name]
        if _spectral_norm(module) is not None:
            prefix = f"{name}.parametrizations.weight.0"
            for vector in ("_u", "_v"):
                overrides[f"{prefix}.{vector}"] = encoder.get_buffer(f"{prefix}.{vector}").clone()
    return functional_call(encoder, overrides, (x,))
