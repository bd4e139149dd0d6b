"""ContraD (Jeong & Shin, ICLR 2021): a contrastive discriminator (METHODS.md).

D = SN conv encoder f + projection heads h_r (SimCLR on two real views), h_f (SupCon on fakes) and a
discriminator head d on the detached encoding, so only the contrastive losses train f. As in
ContraD's SNDCGAN, every linear layer of the heads is spectral-normalised too.

One D step: one augmentation call and one encoder forward over the 3B images (t1 x, t2 x, t G z),
each head applied once, one backward. ``loss/con_real`` is L_con+, ``loss/con_fake`` the unweighted
L_con-, ``loss/dis`` the non-saturating d-head loss; ``loss/d`` is their weighted sum.
Damage GAN (damage.py) overrides only ``encode`` and ``real_contrastive_loss``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from trainers.augment import simclr_augment
from trainers.losses import ns_d, ns_g, nt_xent, supcon_fake
from trainers.methods.base import GANMethod
from trainers.nets import Encoder, Generator


def _head(d: int, out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(spectral_norm(nn.Linear(d, hidden)), nn.LeakyReLU(0.1),
                         spectral_norm(nn.Linear(hidden, out)))


class ContrastiveDiscriminator(nn.Module):
    """Encoder ``f`` + heads ``h_r``, ``h_f`` (Linear(d, d) -> LeakyReLU(0.1) -> Linear(d, proj_dim))
    and ``d`` (the same 2-layer MLP to one logit, on ``f(x).detach()``); ``hidden`` defaults to d."""

    def __init__(self, ch: int, resolution: int, channels: int, proj_dim: int, hidden: int | None = None):
        super().__init__()
        self.encoder = Encoder(ch, resolution, channels)
        d = self.encoder.out_dim
        hidden = hidden or d
        self.h_r = _head(d, proj_dim, hidden)
        self.h_f = _head(d, proj_dim, hidden)
        self.d = _head(d, 1, hidden)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = self.encoder(x)
        return {"feat": feat, "adv": self.d(feat.detach()).squeeze(1),
                "proj_real": self.h_r(feat), "proj_fake": self.h_f(feat)}


class ContraD(GANMethod):
    def build_nets(self):
        cfg = self.cfg
        return (Generator(cfg.z_dim, cfg.ch, self.resolution, self.channels),
                ContrastiveDiscriminator(cfg.ch, self.resolution, self.channels, cfg.proj_dim))

    def encode(self, views: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encoder features of the three thirds of ``views`` (t1 x, t2 x, t G z): one dense forward."""
        return self.D.encoder(views).chunk(3)

    def real_contrastive_loss(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        """L_con+: SimCLR over the two real views."""
        z1, z2 = self.D.h_r(torch.cat([f1, f2])).chunk(2)
        return nt_xent(z1, z2, self.cfg.temperature)

    def d_step(self, real, labels, step):
        cfg = self.cfg
        with torch.no_grad():
            fake = self.G(self.sample_z(len(real)))
        f1, f2, f_fake = self.encode(simclr_augment(torch.cat([real, real, fake])), step)
        loss_real = self.real_contrastive_loss(f1, f2)
        z = self.D.h_f(torch.cat([f1, f2, f_fake]))
        loss_fake = supcon_fake(z[: 2 * len(real)], z[2 * len(real):], cfg.temperature)
        logits = self.D.d(torch.cat([f1, f_fake]).detach()).squeeze(1)
        loss_dis = ns_d(logits[: len(real)], logits[len(real):])
        loss = loss_real + cfg.contrastive_weight * loss_fake + loss_dis
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return {"loss/d": loss.detach(), "loss/con_real": loss_real.detach(),
                "loss/con_fake": loss_fake.detach(), "loss/dis": loss_dis.detach()}

    def g_step(self, step):
        fake = self.G(self.sample_z(self.cfg.batch_size))
        self.D.requires_grad_(False)  # the G step needs no D weight gradients
        try:
            logits = self.D.d(self.D.encoder(simclr_augment(fake))).squeeze(1)
        finally:
            self.D.requires_grad_(True)
        loss = ns_g(logits)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return {"loss/g": loss.detach()}
