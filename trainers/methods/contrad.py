"""ContraD (Jeong & Shin, ICLR 2021): a contrastive discriminator (METHODS.md).

D = SN conv encoder f + projection heads h_r (SimCLR on real views), h_f (SupCon on fakes) and a
discriminator head d on the detached encoding, so only the contrastive losses train f.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainers.augment import simclr_augment
from trainers.losses import nt_xent, supcon_fake
from trainers.methods.base import GANMethod
from trainers.nets import Encoder, Generator


def _mlp(d: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.LeakyReLU(0.1), nn.Linear(d, out))


class ContrastiveDiscriminator(nn.Module):
    def __init__(self, ch: int, resolution: int, channels: int, proj_dim: int):
        super().__init__()
        self.encoder = Encoder(ch, resolution, channels)
        d = self.encoder.out_dim
        self.h_r = _mlp(d, proj_dim)
        self.h_f = _mlp(d, proj_dim)
        self.d = _mlp(d, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = self.encoder(x)
        return {"feat": feat, "adv": self.d(feat.detach()).squeeze(1)}


class ContraD(GANMethod):
    def build_nets(self):
        cfg = self.cfg
        return (Generator(cfg.z_dim, cfg.ch, self.resolution, self.channels),
                ContrastiveDiscriminator(cfg.ch, self.resolution, self.channels, cfg.proj_dim))

    def real_view_features(self, real: torch.Tensor, fake_view: torch.Tensor, step: int):
        """Encoder features of (t1 x, t2 x, t G z): one dense forward over the 3B images."""
        b = len(real)
        feats = self.D.encoder(torch.cat([simclr_augment(real), simclr_augment(real), fake_view]))
        return feats[:b], feats[b:2 * b], feats[2 * b:]

    def real_contrastive_loss(self, f1, f2) -> torch.Tensor:
        """L_con+: SimCLR over the two real views."""
        return nt_xent(self.D.h_r(f1), self.D.h_r(f2), self.cfg.temperature)

    def d_step(self, real, labels, step):
        cfg = self.cfg
        with torch.no_grad():
            fake = self.G(self.sample_z(len(real)))
        f1, f2, ff = self.real_view_features(real, simclr_augment(fake), step)
        loss_real = self.real_contrastive_loss(f1, f2)
        loss_fake = supcon_fake(self.D.h_f(torch.cat([f1, f2])), self.D.h_f(ff), cfg.temperature)
        logits_real = self.D.d(f1.detach()).squeeze(1)
        logits_fake = self.D.d(ff.detach()).squeeze(1)
        loss_dis = F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean()
        loss = loss_real + cfg.contrastive_weight * loss_fake + loss_dis
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return {"loss/d": loss.detach(), "loss/con_real": loss_real.detach(), "loss/con_fake": loss_fake.detach(),
                "loss/dis": loss_dis.detach()}

    def g_step(self, step):
        fake = self.G(self.sample_z(self.cfg.batch_size))
        logits = self.D.d(self.D.encoder(simclr_augment(fake))).squeeze(1)
        loss = F.softplus(-logits).mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return {"loss/g": loss.detach()}
