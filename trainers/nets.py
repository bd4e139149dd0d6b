"""Generator and discriminator building blocks (SNDCGAN-style, width multiplier ``ch``).

A discriminator is an encoder ``f`` (spectral-normalised convs, LeakyReLU(0.1), no BatchNorm) plus
heads, each a submodule a method can call on its own; the forward of every discriminator returns its
adversarial logits (one per image).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def num_upsamples(resolution: int) -> int:
    n = int(math.log2(resolution // 4))
    if 4 * 2 ** n != resolution:
        raise ValueError(f"resolution {resolution} must be 4 * 2**n")
    return n


class Generator(nn.Module):
    """z -> linear to 4x4x(8ch) -> [ConvTranspose 4x4/2, BN, ReLU] x n -> conv 3x3 -> tanh.

    ``norm`` builds each block's normalisation layer from its channel count (BatchNorm by default;
    the conditional GAN passes class-conditional BatchNorm). Such a layer may take ``y``.
    """

    def __init__(self, z_dim: int, ch: int, resolution: int, channels: int, norm=None):
        super().__init__()
        norm = norm or nn.BatchNorm2d
        self.z_dim = z_dim
        widths = [8 * ch // 2 ** i for i in range(num_upsamples(resolution) + 1)]
        self.fc = nn.Linear(z_dim, 4 * 4 * widths[0])
        self.norm0 = norm(widths[0])
        self.ups = nn.ModuleList(nn.ConvTranspose2d(a, b, 4, 2, 1) for a, b in zip(widths, widths[1:]))
        self.norms = nn.ModuleList(norm(b) for b in widths[1:])
        self.out = nn.Conv2d(widths[-1], channels, 3, 1, 1)
        self.act = nn.ReLU()

    def _norm(self, layer, h, y):
        return layer(h) if y is None else layer(h, y)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc(z).view(len(z), -1, 4, 4)
        h = self.act(self._norm(self.norm0, h, y))
        for up, norm in zip(self.ups, self.norms):
            h = self.act(self._norm(norm, up(h), y))
        return torch.tanh(self.out(h))


class Encoder(nn.Module):
    """SNDCGAN trunk: per stage conv3x3/1 then conv4x4/2, down to 4x4, then conv3x3 to 8ch; flatten."""

    def __init__(self, ch: int, resolution: int, channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        width_in = channels
        for i in range(num_upsamples(resolution)):
            width = ch * 2 ** i
            layers += [spectral_norm(nn.Conv2d(width_in, width, 3, 1, 1)), nn.LeakyReLU(0.1),
                       spectral_norm(nn.Conv2d(width, width, 4, 2, 1)), nn.LeakyReLU(0.1)]
            width_in = width
        layers += [spectral_norm(nn.Conv2d(width_in, 8 * ch, 3, 1, 1)), nn.LeakyReLU(0.1)]
        self.net = nn.Sequential(*layers)
        self.out_dim = 8 * ch * 4 * 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class Discriminator(nn.Module):
    """Encoder ``f`` + one spectral-normalised linear head ``adv`` (the DCGAN baseline)."""

    def __init__(self, ch: int, resolution: int, channels: int):
        super().__init__()
        self.encoder = Encoder(ch, resolution, channels)
        self.adv = spectral_norm(nn.Linear(self.encoder.out_dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adv(self.encoder(x)).squeeze(1)


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without its own affine, then ``BN(x) * (1 + gamma_y) + beta_y`` (the cGAN conditioning,
    as gSRGAN's ``src/utils/model_ops.py`` and StudioGAN write it).

    ``gamma.weight`` and ``beta.weight`` are (num_classes, num_features) embeddings holding only the
    class-specific part: row ``y`` is what the group spectral regulariser reshapes into a near-square
    matrix and penalises; the identity ``1`` is not a parameter, so it is never penalised. Both tables are
    initialised orthogonally (gSRGAN/StudioGAN ``g_init: ortho``): each class's row starts with unit
    norm (at most 1 when there are more classes than features), so every sigma_max starts at most 1.
    """

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gamma = nn.Embedding(num_classes, num_features)
        self.beta = nn.Embedding(num_classes, num_features)
        nn.init.orthogonal_(self.gamma.weight)
        nn.init.orthogonal_(self.beta.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * (1 + self.gamma(y))[:, :, None, None] + self.beta(y)[:, :, None, None]


class ProjectionDiscriminator(nn.Module):
    """SNDCGAN encoder ``phi`` + projection head: ``D(x, y) = psi(phi(x)) + <embed(y), phi(x)>``.

    Without ``y`` only the unconditional term ``psi(phi(x))`` is returned.
    """

    def __init__(self, ch: int, resolution: int, channels: int, num_classes: int):
        super().__init__()
        self.encoder = Encoder(ch, resolution, channels)
        self.psi = spectral_norm(nn.Linear(self.encoder.out_dim, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, self.encoder.out_dim))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        feat = self.encoder(x)
        adv = self.psi(feat).squeeze(1)
        if y is not None:
            adv = adv + (self.embed(y) * feat).sum(1)
        return adv
