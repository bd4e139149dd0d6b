"""DCGAN baseline: SNDCGAN D, non-saturating loss (METHODS.md)."""

from __future__ import annotations

import torch

from trainers.losses import ns_d, ns_g
from trainers.methods.base import GANMethod
from trainers.nets import Discriminator, Generator


class DCGAN(GANMethod):
    def build_nets(self):
        cfg = self.cfg
        return (Generator(cfg.z_dim, cfg.ch, self.resolution, self.channels),
                Discriminator(cfg.ch, self.resolution, self.channels))

    def d_step(self, real, labels, step):
        with torch.no_grad():
            fake = self.G(self.sample_z(len(real)))
        logits = self.D(torch.cat([real, fake]))["adv"]
        loss = ns_d(logits[: len(real)], logits[len(real):])
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return {"loss/d": loss.detach()}

    def g_step(self, step):
        fake = self.G(self.sample_z(self.cfg.batch_size))
        loss = ns_g(self.D(fake)["adv"])
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return {"loss/g": loss.detach()}
