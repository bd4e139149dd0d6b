"""Losses: the adversarial losses (non-saturating, hinge) and the contrastive losses of ContraD/SDCLR."""

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


# ----------------------------------------------------------------------------------------------
# Contrastive losses (ContraD, SDCLR). Projections are L2-normalised here, before any similarity.


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR's NT-Xent over 2B views: the positive of view i is the other view of its image, the
    denominator all 2B - 1 other views; mean over the 2B anchors."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    b = len(z1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, positives)


def supcon_fake(z_real: torch.Tensor, z_fake: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """ContraD's SupCon on fakes: each of the B fakes is an anchor whose positives are the B - 1 other
    fakes and whose denominator is all other projections (real views and fakes); log-probabilities are
    averaged over the positives, then over the anchors."""
    z = F.normalize(torch.cat([z_real, z_fake]), dim=1)
    n_real, b = len(z_real), len(z_fake)
    anchors = z[n_real:]
    sim = anchors @ z.t() / temperature  # B x (n_real + B)
    self_mask = torch.zeros_like(sim, dtype=torch.bool)
    self_mask[torch.arange(b), n_real + torch.arange(b)] = True
    sim = sim.masked_fill(self_mask, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positive = torch.zeros_like(self_mask)
    positive[:, n_real:] = True
    positive &= ~self_mask
    mean_pos = log_prob.masked_fill(~positive, 0.0).sum(1) / positive.sum(1).clamp(min=1)
    return -mean_pos.mean()
