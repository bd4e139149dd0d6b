"""Augmentations on batched tensors in [-1, 1], on the tensor's device.

- ``simclr_augment``: ContraD's SimCLR-style T (kornia): random resized crop scale (0.2, 1), horizontal
  flip 0.5, colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8, greyscale p 0.2; colour ops are skipped for
  1-channel data. Each image gets its own random parameters. Differentiable, so the G step can use it.
- ``contrastive_augment(x, policy)``: the contrastive methods' T by name (``CONTRASTIVE_POLICIES``):
  ``simclr`` (above), and two policies for digits, where a 20% crop (7 x 7 pixels of a 16 x 16 digit)
  or a mirror image is another symbol and teaches D an invariance that is wrong for the data:
  ``digits`` (a mild random resized crop, scale 0.6-1, aspect 3/4-4/3, then a rotation of at most 10
  degrees and a translation of at most 1/16 of the side; no flip) and ``translate`` (pad-and-crop
  translations of at most 1/8 of the side, DiffAugment's translation with black padding; nothing else).
  ``auto`` is ``digits`` for 1-channel data and ``simclr`` otherwise (docs/pilot.md, the contrastive pilot).
- ``diff_augment``: DiffAugment (Zhao et al., 2020) policies ``color``, ``translation``, ``cutout``,
  differentiable; the caller applies the same policy to reals and fakes.

Both draw from torch's global RNG (on the tensor's device), so the loop's RNG checkpoint makes a
resumed run bit-exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_PIPELINES: dict[tuple[int, int, int], nn.Module] = {}


def simclr_pipeline(channels: int, height: int, width: int) -> nn.Module:
    key = (channels, height, width)
    if key not in _PIPELINES:
        import kornia.augmentation as K

        # "resample" crops the whole batch with one warp; the default "slice" mode loops over images
        ops: list[nn.Module] = [K.RandomResizedCrop((height, width), scale=(0.2, 1.0), cropping_mode="resample"),
                                K.RandomHorizontalFlip(p=0.5)]
        if channels == 3:
            ops += [K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), K.RandomGrayscale(p=0.2)]
        _PIPELINES[key] = nn.Sequential(*ops)
    return _PIPELINES[key]


def simclr_augment(x: torch.Tensor) -> torch.Tensor:
    """One random SimCLR view of every image of ``x`` (B x C x H x W in [-1, 1])."""
    pipeline = simclr_pipeline(*x.shape[1:]).to(x.device)
    return pipeline((x + 1) * 0.5) * 2 - 1


_DIGIT_PIPELINES: dict[tuple[int, int], nn.Module] = {}


def digits_augment(x: torch.Tensor) -> torch.Tensor:
    """One mild view of every digit of ``x``: crop scale (0.6, 1), rotation <= 10 deg, shift <= 1/16; no flip.
    Both ops warp in [0, 1] with zero (black) fill, the digits' background."""
    h, w = x.shape[2:]
    if (h, w) not in _DIGIT_PIPELINES:
        import kornia.augmentation as K

        _DIGIT_PIPELINES[(h, w)] = nn.Sequential(
            K.RandomResizedCrop((h, w), scale=(0.6, 1.0), cropping_mode="resample"),
            K.RandomAffine(degrees=10.0, translate=(1 / 16, 1 / 16), p=1.0))
    return _DIGIT_PIPELINES[(h, w)].to(x.device)((x + 1) * 0.5) * 2 - 1


def translate_augment(x: torch.Tensor) -> torch.Tensor:
    """Every image of ``x`` shifted by up to 1/8 of its side in each direction, black (-1) coming in."""
    return _translation(x + 1) - 1  # _translation pads with 0: shift to a 0 background and back


CONTRASTIVE_POLICIES = {"simclr": simclr_augment, "digits": digits_augment, "translate": translate_augment}


def resolve_policy(policy: str, channels: int) -> str:
    """``auto`` -> ``digits`` for 1-channel (digit) data, ``simclr`` for colour images."""
    if policy == "auto":
        return "digits" if channels == 1 else "simclr"
    return policy


def contrastive_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """One random view of every image of ``x`` under ``policy`` (a name of ``CONTRASTIVE_POLICIES`` or auto)."""
    return CONTRASTIVE_POLICIES[resolve_policy(policy, x.shape[1])](x)


# ----------------------------------------------------------------------------------------------
# DiffAugment


def _color(x: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    x = x + (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    ty = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    gb, gx, gy = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")
    gx = torch.clamp(gx + tx + 1, 0, h + 1)
    gy = torch.clamp(gy + ty + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    return padded.permute(0, 2, 3, 1).contiguous()[gb, gx, gy].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    oy = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    gb, gx, gy = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(ch, device=x.device),
                                torch.arange(cw, device=x.device), indexing="ij")
    gx = torch.clamp(gx + ox - ch // 2, 0, h - 1)
    gy = torch.clamp(gy + oy - cw // 2, 0, w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


DIFFAUGMENT_POLICIES = {"color": _color, "translation": _translation, "cutout": _cutout}


def diff_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """Apply the comma-separated DiffAugment ``policy`` (e.g. "color,translation,cutout")."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    for name in names:
        if name not in DIFFAUGMENT_POLICIES:
            raise ValueError(f"unknown DiffAugment policy '{name}'; valid: {', '.join(DIFFAUGMENT_POLICIES)}")
    for name in names:
        x = DIFFAUGMENT_POLICIES[name](x)
    return x
