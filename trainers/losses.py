"""Losses: adversarial losses by name (a plain dict) and the contrastive losses of ContraD/SDCLR."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ns_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating D loss: softplus(-D(real)) + softplus(D(fake))."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def ns_g(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating G loss: softplus(-D(fake))."""
    return F.softplus(-fake_logits).mean()


def hinge_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_g(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


# name -> (d_loss(real_logits, fake_logits), g_loss(fake_logits))
ADVERSARIAL_LOSSES = {
    "ns": (ns_d, ns_g),
    "hinge": (hinge_d, hinge_g),
}


def adversarial_loss(name: str):
    if name not in ADVERSARIAL_LOSSES:
        raise KeyError(f"unknown adversarial loss '{name}'; valid: {', '.join(ADVERSARIAL_LOSSES)}")
    return ADVERSARIAL_LOSSES[name]
