"""Regularisers of the conditional GAN: the group Spectral Regulariser (gSR) and LeCam.

gSR (Rangwani et al., ECCV 2022; gSRGAN ``src/worker.py``): each class's conditional-BN embedding row
gamma_y^l (and beta_y^l), a vector of length C_l holding only the class-specific part of the
conditioning (the gain is ``1 + gamma``), is reshaped into the a x b matrix closest to square
(a * b = C_l, a <= b) and the square of its largest singular value is penalised, weighted towards the
tail classes by the effective number of samples and divided by layers x classes as gSRGAN does:

    L_gSR = lam / (L * K) * sum_l sum_y w_y * (sigma_max(Gamma_y^l)^2 + sigma_max(B_y^l)^2)

sigma_max comes from power iteration whose vectors persist across calls, as in gSRGAN
(``src/utils/model_ops.py``, ``ConditionalBatchNorm2d.plot_sn``: ``u0..v1`` are kept and updated in
place): ``FIRST_CALL_FACTOR`` x ``n_iter`` iterations from a random start on the first call (gSRGAN's
"based on NVAE" warm start), then ``n_iter`` per G step (gSRGAN's ``num_power_iter``, 4 in SNGAN.json),
which track the slowly moving matrices as spectral normalisation does. We differ in one detail: gSRGAN's
bias iteration updates ``u1`` from the gain's ``v0`` (a slip); here each matrix has its own vectors.
"""

from __future__ import annotations

import math
from typing import MutableMapping, Sequence

import torch
import torch.nn.functional as F

_EPS = 1e-12
FIRST_CALL_FACTOR = 10  # iterations on the first call, in multiples of n_iter (gSRGAN's cold start)


def closest_square(c: int) -> tuple[int, int]:
    """``(a, b)`` with ``a * b == c``, ``a <= b`` and ``a`` the largest divisor of c <= sqrt(c)."""
    if c < 1:
        raise ValueError(f"cannot reshape {c} channels into a matrix")
    a = math.isqrt(c)
    while c % a:
        a -= 1
    return a, c // a


def as_group_matrices(rows: torch.Tensor) -> torch.Tensor:
    """(K, C) -> (K, a, b): each row as its closest-square matrix (row-major)."""
    a, b = closest_square(rows.shape[1])
    return rows.reshape(rows.shape[0], a, b)


def effective_number_weights(counts: Sequence[int], beta: float = 0.999) -> torch.Tensor:
    """Class-balanced weights ``w_y ∝ (1 - beta) / (1 - beta ** n_y)``, normalised to sum to K.

    A class without training images counts as one image, so its weight stays finite (it is then the
    largest, as for any rarest class).
    """
    n = torch.tensor([max(1, int(c)) for c in counts], dtype=torch.float64)
    w = (1.0 - beta) / (1.0 - beta ** n) if beta > 0 else torch.ones_like(n)
    return (w * (len(n) / w.sum())).float()


@torch.no_grad()
def power_iterate(mats: torch.Tensor, u: torch.Tensor, n_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_iter`` batched power-iteration steps on (N, a, b) matrices from left vectors ``u`` (N, a).

    Returns the updated unit ``u`` (N, a) and the matching right vectors ``v = W^T u / |W^T u|``.
    A zero matrix (a bias embedding at its initial 0) keeps its previous ``u`` instead of collapsing
    it to the zero vector, which would stay zero for good once the matrix grows.
    """
    mats = mats.detach()
    for _ in range(n_iter):
        v = F.normalize(torch.einsum("nab,na->nb", mats, u), dim=1, eps=_EPS)
        wv = torch.einsum("nab,nb->na", mats, v)
        norm = wv.norm(dim=1, keepdim=True)
        u = torch.where(norm > _EPS, wv / norm.clamp_min(_EPS), u)
    v = F.normalize(torch.einsum("nab,na->nb", mats, u), dim=1, eps=_EPS)
    return u, v


def _sigma(mats: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``u^T W v`` per matrix: sigma_max with the gradient ``u v^T`` once u, v have converged."""
    return torch.einsum("na,nab,nb->n", u, mats, v)


def _initial_vectors(n: int, a: int, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.randn(n, a, generator=generator, dtype=like.dtype)
    return F.normalize(u, dim=1).to(like.device)


def group_sigma_max(vectors: torch.Tensor, n_iter: int | None = None) -> torch.Tensor:
    """For each row of a (K, C) tensor, the largest singular value of its closest-square reshape.

    ``n_iter=None`` is exact (``torch.linalg.matrix_norm(ord=2)``); an integer runs that many power
    iterations from a fixed random start (useful to compare against the persistent estimate).
    """
    mats = as_group_matrices(vectors)
    if n_iter is None:
        return torch.linalg.matrix_norm(mats, ord=2)
    gen = torch.Generator().manual_seed(0)
    u, v = power_iterate(mats, _initial_vectors(len(mats), mats.shape[1], mats, gen), n_iter)
    return _sigma(mats, u, v)


def group_spectral_penalty(gains: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                           class_weights: torch.Tensor, vectors: MutableMapping[str, torch.Tensor], *,
                           n_iter: int = 1, lam: float = 1.0,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """``lam / (L K) * sum_l sum_y w_y (sigma_max(Gamma_y^l)^2 + sigma_max(B_y^l)^2)`` in one batched pass.

    ``gains``/``biases``: one (K, C_l) embedding weight per conditional-BN layer, L layers (``biases``
    may be empty to penalise gains only). Layers whose reshape has the same shape are stacked, so the work
    is one batched power iteration per distinct shape, over all classes and layers at once.
    ``vectors`` is the caller's persistent state (shape key -> left singular vectors); missing
    entries are initialised from ``generator`` and iterated ``FIRST_CALL_FACTOR * n_iter`` times, and
    every entry is replaced by its updated vectors.
    """
    if biases and len(biases) != len(gains):
        raise ValueError(f"{len(gains)} gain matrices but {len(biases)} bias matrices")
    groups: dict[tuple[int, int], list[torch.Tensor]] = {}
    for i, gain in enumerate(gains):
        if gain.shape[0] != len(class_weights):
            raise ValueError(f"gain {i} has {gain.shape[0]} classes, the weights {len(class_weights)}")
        groups.setdefault(closest_square(gain.shape[1]), []).extend(
            [gain, biases[i]] if biases else [gain])
    total = class_weights.new_zeros(())
    for (a, b), rows in groups.items():
        mats = torch.cat(rows).view(-1, a, b)
        key = f"{a}x{b}"
        u, iterations = vectors.get(key), n_iter
        if u is None:
            u, iterations = _initial_vectors(len(mats), a, mats, generator), FIRST_CALL_FACTOR * n_iter
        elif u.shape != (len(mats), a):
            raise ValueError(f"power-iteration state '{key}' has shape {tuple(u.shape)}, "
                             f"expected {(len(mats), a)}: it belongs to other layers")
        u, v = power_iterate(mats, u, iterations)
        vectors[key] = u
        weights = class_weights.to(mats.dtype).repeat(len(rows))
        total = total + (weights * _sigma(mats, u, v).square()).sum()
    return lam / (len(gains) * len(class_weights)) * total


def lecam(real_logits: torch.Tensor, fake_logits: torch.Tensor, anchor_real: torch.Tensor,
          anchor_fake: torch.Tensor) -> torch.Tensor:
    """LeCam regulariser (Tseng et al., CVPR 2021) for the D loss: pulls D(real) towards the EMA of
    D(fake) and D(fake) towards the EMA of D(real), one-sidedly.

    ``mean(relu(D(real) - ema_fake)^2) + mean(relu(ema_real - D(fake))^2)``
    """
    return (F.relu(real_logits - anchor_fake).square().mean()
            + F.relu(anchor_real - fake_logits).square().mean())
