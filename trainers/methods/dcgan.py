"""DCGAN baseline: SNDCGAN G and D, non-saturating loss (docs/methods.md, "DCGAN")."""

from __future__ import annotations

import torch

from trainers.losses import ns_d, ns_g
from trainers.methods.base import GANMethod
from trainers.nets import Discriminator, Generator


class DCGAN(GANMethod):
    baseline = True  # the unregularised GAN every other method is compared against

    def build_nets(self):
        cfg = self.cfg
        return (Generator(cfg.z_dim, cfg.ch, self.resolution, self.channels),
                Discriminator(cfg.ch, self.resolution, self.channels))

    def d_loss(self, real, labels, fake, fake_labels, step):
        logits = self.D(torch.cat([real, fake]))
        return ns_d(logits[: len(real)], logits[len(real):]), {}

    def g_loss(self, fake, fake_labels, step):
        return ns_g(self.D(fake)), {}
