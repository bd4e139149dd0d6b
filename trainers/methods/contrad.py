"""ContraD (Jeong & Shin, ICLR 2021): a contrastive discriminator (docs/methods.md, "ContraD").

D = SN conv encoder f + heads h_r (SimCLR on two real views), h_f (SupCon on fakes) and a
discriminator head d on the detached encoding, so only the contrastive losses train f. As in ContraD's
SNDCGAN (``models/gan/sndcgan.py``, ``models/gan/__init__.py``), every linear layer of the heads is
spectral-normalised and their hidden width is ``head_hidden`` (512 there).

One D step (ContraD's ``training/gan/contrad.py``): one augmentation call and one encoder forward over
the 3B images (t1 x, t2 x, t G z), each head applied once. T is ``contrastive_aug`` (augment.py): the
reference's SimCLR pipeline for colour images, a milder one without flips for digits (docs/pilot.md). ``loss/con_real`` is L_con+,
``loss/con_fake`` the unweighted L_con-, ``loss/dis`` the non-saturating d-head loss; ``loss/d`` is
L_con+ + contrastive_weight * L_con- + L_dis. Damage GAN (damage.py) replaces only the real-side term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from trainers.augment import CONTRASTIVE_POLICIES, contrastive_augment
from trainers.losses import ns_d, ns_g, nt_xent, supcon_fake
from trainers.methods.base import GANMethod
from trainers.nets import Encoder, Generator
from trainers.fields import INF, setting


@dataclass(frozen=True)
class ContraDKnobs:
    contrastive_weight: float = setting(1.0, "lambda_con: weight of the fake-side SupCon term L_con-",
                                        between=(0.0, INF, "[]"))
    temperature: float = setting(0.1, "tau of both contrastive losses", between=(0.0, INF, "(]"))
    proj_dim: int = setting(128, "output size of the projection heads h_r and h_f", positive=True)
    head_hidden: int = setting(128, "hidden width of the heads h_r, h_f and d (CPU-sized; ContraD's SNDCGAN "
                                    "uses 512, the GPU presets' value)", positive=True)
    contrastive_aug: str = setting("auto", "T of both contrastive views and of G's fakes: simclr (ContraD's), "
                                           "digits (mild crop/rotation/shift, no flip), translate (pad-and-crop "
                                           "shifts only); auto = digits for 1-channel data, simclr otherwise",
                                   choices=("auto", *CONTRASTIVE_POLICIES))


def _head(d: int, out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(spectral_norm(nn.Linear(d, hidden)), nn.LeakyReLU(0.1),
                         spectral_norm(nn.Linear(hidden, out)))


class ContrastiveDiscriminator(nn.Module):
    """Encoder ``f`` + heads ``h_r``, ``h_f`` (Linear(d, H) -> LeakyReLU(0.1) -> Linear(H, proj_dim)) and
    ``d`` (the same MLP to one logit). The forward is what G is trained against: ``d(f(x))``."""

    def __init__(self, ch: int, resolution: int, channels: int, proj_dim: int, hidden: int):
        super().__init__()
        self.encoder = Encoder(ch, resolution, channels)
        d = self.encoder.out_dim
        self.h_r = _head(d, proj_dim, hidden)
        self.h_f = _head(d, proj_dim, hidden)
        self.d = _head(d, 1, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.d(self.encoder(x)).squeeze(1)


class ContraD(GANMethod):
    Knobs = ContraDKnobs
    step_cost = 1.7  # D sees 3 batches (two views of the reals, the fakes) through its encoder and heads

    def build_nets(self):
        cfg, knobs = self.cfg, self.knobs
        return (Generator(cfg.z_dim, cfg.ch, self.resolution, self.channels),
                ContrastiveDiscriminator(cfg.ch, self.resolution, self.channels, knobs.proj_dim, knobs.head_hidden))

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """One random view of every image of ``x`` under the method's ``contrastive_aug``."""
        return contrastive_augment(x, self.knobs.contrastive_aug)

    def d_loss(self, real, labels, fake, fake_labels, step):
        b, knobs = len(real), self.knobs
        views = self.augment(torch.cat([real, real, fake]))
        features = self.D.encoder(views)
        t1, t2, _ = views.chunk(3)
        f1, f2, f_fake = features.chunk(3)
        loss_real = self.real_contrastive_loss(t1, t2, f1, f2)
        z = self.D.h_f(features)
        loss_fake = supcon_fake(z[: 2 * b], z[2 * b:], knobs.temperature)
        logits = self.D.d(torch.cat([f1, f_fake]).detach()).squeeze(1)
        loss_dis = ns_d(logits[:b], logits[b:])
        loss = loss_real + knobs.contrastive_weight * loss_fake + loss_dis
        return loss, {"loss/con_real": loss_real.detach(), "loss/con_fake": loss_fake.detach(),
                      "loss/dis": loss_dis.detach()}

    def real_contrastive_loss(self, t1: torch.Tensor, t2: torch.Tensor, f1: torch.Tensor,
                              f2: torch.Tensor) -> torch.Tensor:
        """L_con+ of the real views ``t1``, ``t2`` (images) given their dense encoder features ``f1``, ``f2``:
        SimCLR (NT-Xent) between the features' ``h_r`` projections (ContraD needs no image, Damage GAN
        re-encodes ``t2`` under its masks)."""
        z1, z2 = self.D.h_r(torch.cat([f1, f2])).chunk(2)
        return nt_xent(z1, z2, self.knobs.temperature)

    def g_loss(self, fake, fake_labels, step):
        return ns_g(self.D(self.augment(fake))), {}

    @classmethod
    def metric_names(cls, knobs, num_classes):
        return ["loss/con_real", "loss/con_fake", "loss/dis"]
