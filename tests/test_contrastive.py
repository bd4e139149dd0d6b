"""ContraD and Damage GAN: contrastive losses against naive loops, SDCLR masks and the pruned forward,
the prune_ratio=0 gradient identity, and a contract test over every registered method."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainers.augment import diff_augment, simclr_augment
from trainers.losses import nt_xent, supcon_fake
from trainers.methods import METHODS
from trainers.nets import Encoder
from trainers.pruning import effective_weights, magnitude_masks, pruned_forward, sparsity


def naive_nt_xent(z1, z2, tau):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n, b = len(z), len(z1)
    total = 0.0
    for i in range(n):
        pos = (i + b) % n
        denom = sum(math.exp(float(z[i] @ z[j]) / tau) for j in range(n) if j != i)
        total += -(float(z[i] @ z[pos]) / tau - math.log(denom))
    return total / n


def naive_supcon_fake(z_real, z_fake, tau):
    z = F.normalize(torch.cat([z_real, z_fake]), dim=1)
    n_real, b = len(z_real), len(z_fake)
    total = 0.0
    for a in range(n_real, n_real + b):
        denom = sum(math.exp(float(z[a] @ z[j]) / tau) for j in range(len(z)) if j != a)
        positives = [p for p in range(n_real, n_real + b) if p != a]
        total += -sum(float(z[a] @ z[p]) / tau - math.log(denom) for p in positives) / len(positives)
    return total / b


def test_nt_xent_matches_a_naive_loop():
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    for tau in (0.1, 0.5):
        assert float(nt_xent(z1, z2, tau)) == pytest.approx(naive_nt_xent(z1, z2, tau), rel=1e-10)


def test_supcon_fake_matches_a_naive_loop():
    torch.manual_seed(1)
    z_real, z_fake = torch.randn(8, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    assert float(supcon_fake(z_real, z_fake, 0.1)) == pytest.approx(naive_supcon_fake(z_real, z_fake, 0.1),
                                                                    rel=1e-10)


def test_masks_remove_exactly_the_ratio_and_keep_the_largest():
    torch.manual_seed(2)
    enc = Encoder(4, 16, 1)
    weights = effective_weights(enc)
    total = sum(w.numel() for w in weights.values())
    for ratio in (0.0, 0.3, 0.9, 0.99):
        masks = magnitude_masks(weights, ratio)
        removed = sum(int((m == 0).sum()) for m in masks.values())
        assert abs(removed - ratio * total) <= 1
        assert sparsity(masks) == pytest.approx(removed / total)
        kept = torch.cat([w.abs().flatten()[m.flatten() > 0] for w, m in zip(weights.values(), masks.values())])
        dropped = torch.cat([w.abs().flatten()[m.flatten() == 0] for w, m in zip(weights.values(), masks.values())])
        if len(kept) and len(dropped):
            assert kept.min() >= dropped.max()


def test_pruned_forward_leaves_dense_weights_and_gradient_shapes_untouched():
    torch.manual_seed(3)
    enc = Encoder(4, 16, 1)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    masks = magnitude_masks(effective_weights(enc), 0.5)
    x = torch.randn(4, 1, 16, 16)
    out = pruned_forward(enc, masks, x)
    out.sum().backward()
    for k, v in enc.state_dict().items():  # weights and the spectral-norm vectors alike
        assert torch.equal(v, before[k]), k
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape
    assert not torch.allclose(out, enc(x))  # the damage is real
    # an all-ones mask is the dense network: same power-iteration step from the same vectors
    full = pruned_forward(enc, magnitude_masks(effective_weights(enc), 0.0), x)
    assert torch.allclose(full, enc(x), atol=1e-6)


def test_sdclr_gradient_equals_simclr_gradient_at_prune_ratio_zero():
    torch.manual_seed(4)
    from trainers.config import make_config
    from trainers.data import load_data

    cfg = make_config({"method": "damage", "prune_ratio": 0.0, "ch": 4, "batch_size": 8})
    data = load_data(cfg)
    damage = METHODS["damage"](cfg, data, torch.device("cpu"))
    contrad = METHODS["contrad"](cfg, data, torch.device("cpu"))
    contrad.D.load_state_dict(damage.D.state_dict())
    damage.update_masks()
    x = torch.rand(8, 1, 16, 16) * 2 - 1
    t1, t2 = simclr_augment(x), simclr_augment(x)

    def grads(method, f1_fn, f2_fn, loss_fn):
        method.D.zero_grad(set_to_none=True)
        loss_fn(f1_fn(t1), f2_fn(t2)).backward()
        return {n: p.grad.clone() for n, p in method.D.named_parameters() if p.grad is not None}

    # the same views, the same weights; the SN buffers are restored so both see the same sigma
    sn = {k: v.clone() for k, v in damage.D.state_dict().items()}
    g_sdclr = grads(damage, damage.D.encoder, lambda t: pruned_forward(damage.D.encoder, damage.masks, t),
                    damage.real_contrastive_loss)
    contrad.D.load_state_dict(sn)
    enc = contrad.D.encoder
    g_simclr = grads(contrad, enc, enc, contrad.real_contrastive_loss)
    assert g_sdclr.keys() == g_simclr.keys() and g_sdclr
    for name in g_sdclr:
        torch.testing.assert_close(g_sdclr[name], g_simclr[name], atol=1e-6, rtol=1e-5, msg=name)


def test_augmentations_keep_shape_range_and_are_random():
    torch.manual_seed(5)
    for channels in (1, 3):
        x = torch.rand(6, channels, 16, 16) * 2 - 1
        v1, v2 = simclr_augment(x), simclr_augment(x)
        assert v1.shape == x.shape and not torch.equal(v1, v2)
        assert v1.min() >= -1.0 - 1e-5 and v1.max() <= 1.0 + 1e-5
        y = diff_augment(x, "color,translation,cutout")
        assert y.shape == x.shape
    with pytest.raises(ValueError, match="unknown DiffAugment policy"):
        diff_augment(x, "colour")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_three_steps_and_resumes(name, tmp_path):
    from trainers.loop import train

    cfg = {"method": name, "ch": 4, "batch_size": 8, "steps": 3, "eval_every": 3, "imbalance": 10,
           "prune_ratio": 0.5, "gsr_lambda": 0.5}
    reports = []
    train(cfg, lambda m, c: reports.append(m), workdir=tmp_path, evaluator=None)
    losses = {k: v for k, v in reports[-1].items() if k.startswith("loss/")}
    assert losses and all(math.isfinite(v) for v in losses.values())
    if name == "damage":
        assert reports[-1]["prune/sparsity"] == pytest.approx(0.5, abs=1e-3)
    last = train({**cfg, "steps": 5}, lambda m, c: reports.append(m), workdir=tmp_path, resume_from=tmp_path,
                 evaluator=None)
    assert last["step"] == 5 and all(math.isfinite(v) for k, v in last.items() if k.startswith("loss/"))
