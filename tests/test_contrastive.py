"""ContraD and Damage GAN: the contrastive losses against naive per-anchor loops, SDCLR masks and the
functional pruned forward, the prune_ratio = 0 gradient identity, the augmentations, and a contract
test that trains and resumes every registered method."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from torch.nn.utils import parametrize

from trainers import checkpoint as ckpt
from trainers.augment import CONTRASTIVE_POLICIES, contrastive_augment, diff_augment, resolve_policy, simclr_augment
from trainers.config import make_config
from trainers.data import load_data
from trainers.losses import nt_xent, supcon_fake
from trainers.methods import METHODS
from trainers.methods.dcgan import DCGAN
from trainers.fields import INF, ConfigError, setting
from trainers.nets import Encoder
from trainers.pruning import encoder_masks, magnitude_masks, prunable_convs, pruned_forward, raw_weight, sparsity

TINY = {"dataset": "digits", "ch": 4, "z_dim": 16, "batch_size": 8, "device": "cpu", "imbalance": 10}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny nets are dominated by per-op overhead; a second intra-op thread only spins (and slows a
    loaded machine down a lot)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- losses against naive per-anchor loops (torch ops, so gradients compare too) --------------------


def naive_nt_xent(z1, z2, tau):
    z = [v / v.norm() for v in torch.cat([z1, z2])]
    n, b = len(z), len(z1)
    losses = []
    for i in range(n):
        positive = (i + b) % n  # the other view of image i
        others = [torch.exp(z[i] @ z[j] / tau) for j in range(n) if j != i]
        losses.append(-(z[i] @ z[positive] / tau - torch.log(sum(others))))
    return sum(losses) / n


def naive_supcon_fake(z_real, z_fake, tau):
    z = [v / v.norm() for v in torch.cat([z_real, z_fake])]
    n_real, n = len(z_real), len(z_real) + len(z_fake)
    per_anchor = []
    for a in range(n_real, n):
        log_denominator = torch.log(sum(torch.exp(z[a] @ z[j] / tau) for j in range(n) if j != a))
        positives = [p for p in range(n_real, n) if p != a]
        per_anchor.append(sum(z[a] @ z[p] / tau - log_denominator for p in positives) / len(positives))
    return -sum(per_anchor) / len(per_anchor)


def _check_against(fn, naive, *inputs, tau):
    inputs = [x.clone().requires_grad_() for x in inputs]
    naive_inputs = [x.detach().clone().requires_grad_() for x in inputs]
    value, expected = fn(*inputs, tau), naive(*naive_inputs, tau)
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-10)
    value.backward()
    expected.backward()
    for x, y in zip(inputs, naive_inputs):
        torch.testing.assert_close(x.grad, y.grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_nt_xent_matches_a_naive_loop(tau):
    gen = torch.Generator().manual_seed(0)
    z1, z2 = (torch.randn(6, 5, dtype=torch.float64, generator=gen) * 3 for _ in range(2))
    _check_against(nt_xent, naive_nt_xent, z1, z2, tau=tau)


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_supcon_fake_matches_a_naive_loop(tau):
    gen = torch.Generator().manual_seed(1)
    b = 4  # as ContraD calls it: 2B real views, B fakes
    z_real = torch.randn(2 * b, 5, dtype=torch.float64, generator=gen)
    z_fake = torch.randn(b, 5, dtype=torch.float64, generator=gen)
    _check_against(supcon_fake, naive_supcon_fake, z_real, z_fake, tau=tau)


# -- SDCLR masks and the pruned forward -------------------------------------------------------------


def conv_weights(enc):
    return {name: raw_weight(conv).detach() for name, conv in prunable_convs(enc).items()}


def test_masks_are_layerwise_exact_keep_the_largest_and_never_empty_a_layer():
    torch.manual_seed(2)
    enc = Encoder(4, 16, 1)
    weights = conv_weights(enc)
    tied = {k: torch.round(w * 4) for k, w in weights.items()}  # few distinct magnitudes: many ties
    for ws in (weights, tied):
        for ratio in (0.0, 0.3, 0.5, 0.9, 0.99):
            masks = magnitude_masks(ws, ratio)
            assert masks.keys() == ws.keys() and all(m.shape == ws[k].shape for k, m in masks.items())
            for name, w in ws.items():
                n, removed = w.numel(), int((masks[name] == 0).sum())
                assert removed == min(round(ratio * n), n - 1), (name, ratio)  # exact, per layer
                assert removed < n  # never an emptied layer
                kept, dropped = w.abs()[masks[name] > 0], w.abs()[masks[name] == 0]
                if len(dropped):
                    assert kept.min() >= dropped.max()  # the largest magnitudes of each layer survive


@pytest.mark.parametrize("resolution", [16, 32])
@pytest.mark.parametrize("ratio", [0.5, 0.9, 0.99])
def test_damage_at_high_ratios_keeps_every_layer_and_trains_finitely(resolution, ratio, tmp_path):
    """At 32 x 32 and 0.9 a global ranking of the normalised weights emptied the largest conv and the
    pruned pass divided 0 by 0 (training diverged at step 0)."""
    from trainers.loop import train

    cfg = {**TINY, "method": "damage", "resolution": resolution, "prune_ratio": ratio, "steps": 2, "eval_every": 2}
    metrics = train(cfg, workdir=tmp_path, evaluator=None)
    assert all(math.isfinite(v) for k, v in metrics.items() if k.startswith("loss/"))
    masks = ckpt.load_latest(tmp_path)[0]["method"]["masks"]
    total = sum(m.numel() for m in masks.values())
    assert all(int(m.sum()) >= 1 for m in masks.values())
    # realised sparsity equals prune_ratio up to each layer's rounding and its kept-one floor
    assert abs(metrics["prune/sparsity"] - ratio) <= len(masks) / total
    assert metrics["prune/sparsity"] == pytest.approx(sparsity(masks))


def converge_spectral_norm(enc, x, steps=300):
    with torch.no_grad():
        for _ in range(steps):  # training-mode forwards run spectral norm's power iteration
            enc(x)


def test_pruned_weight_is_the_mask_times_the_dense_normalised_weight():
    """The pruned conv uses M * (W / sigma(W)), sigma of the dense W (torch.linalg here), not
    (M * W) / sigma(M * W)."""
    torch.manual_seed(3)
    enc = Encoder(4, 16, 1)
    x = torch.randn(4, 1, 16, 16)
    converge_spectral_norm(enc, x)
    enc.eval()  # spectral norm's stored vectors, no further iteration: two passes see one weight
    masks = encoder_masks(enc, 0.9)
    h, expected = x, None
    for name, layer in enc.net.named_children():
        if name in masks:
            w = raw_weight(layer).detach()
            sigma = torch.linalg.matrix_norm(w.flatten(1), ord=2)
            effective = masks[name] * w / sigma
            renormalised = (masks[name] * w) / torch.linalg.matrix_norm((masks[name] * w).flatten(1), ord=2)
            assert (renormalised.abs().sum() / effective.abs().sum()) > 1.5  # the wrong order would undo damage
            h = torch.nn.functional.conv2d(h, effective, layer.bias, layer.stride, layer.padding)
        else:
            h = layer(h)
    expected = h.flatten(1)
    torch.testing.assert_close(pruned_forward(enc, masks, x), expected, rtol=1e-4, atol=1e-5)


def test_pruned_forward_leaves_dense_state_untouched_and_gradients_masked():
    torch.manual_seed(3)
    enc = Encoder(4, 16, 1)
    x = torch.randn(4, 1, 16, 16)
    params = dict(enc.named_parameters())
    masks = encoder_masks(enc, 0.5)
    with parametrize.cached():
        dense = enc(x)
        before = {k: v.clone() for k, v in enc.state_dict().items()}  # weights and spectral-norm vectors
        out = pruned_forward(enc, masks, x)
        out.square().sum().backward()
    for k, v in enc.state_dict().items():  # the pruned pass ran no power iteration of its own
        assert torch.equal(v, before[k]), k
    assert dict(enc.named_parameters()) == params  # the same Parameter objects, nothing swapped in
    for name, conv in prunable_convs(enc).items():  # pruned weights get no gradient, kept ones do
        grad = raw_weight(conv).grad
        assert grad is not None and grad.shape == raw_weight(conv).shape
        assert grad[masks[name] > 0].abs().sum() > 0
    # an all-ones mask inside the same cached step computes the dense network exactly
    with parametrize.cached():
        dense = enc(x)
        full = pruned_forward(enc, encoder_masks(enc, 0.0), x)
        damaged = pruned_forward(enc, masks, x)
    torch.testing.assert_close(full, dense, rtol=0, atol=1e-6)
    assert (damaged - dense).abs().max() > 1e-3


def _methods(ratio):
    # SimCLR's T, which the independent computations below redraw with simclr_augment
    cfg = make_config({**TINY, "method": "damage", "prune_ratio": ratio, "contrastive_aug": "simclr"})
    data = load_data(cfg)
    torch.manual_seed(4)
    damage = METHODS["damage"](cfg, data, torch.device("cpu"))
    contrad = METHODS["contrad"](make_config({**TINY, "method": "contrad", "contrastive_aug": "simclr"}), data,
                                 torch.device("cpu"))
    contrad.D.load_state_dict(damage.D.state_dict())  # same weights and spectral-norm vectors
    return damage, contrad


def _d_step_gradients(method, real, fake, step=0):
    method.before_step(step)  # Damage GAN's masks
    torch.manual_seed(5)  # the same views t1 x, t2 x, t G z for both methods
    method.D.zero_grad(set_to_none=True)
    loss, logs = method.d_loss(real, None, fake, None, step)
    return loss, logs


def test_sdclr_gradient_equals_simclr_gradient_at_prune_ratio_zero():
    """With an all-ones mask z_p is the dense h_r f(t2 x); NT-Xent(z_d, sg z_p) then gives z_d exactly
    SimCLR's gradient and NT-Xent(sg z_d, z_p) gives z_p its, so the sum has L_con+'s gradient."""
    damage, contrad = _methods(0.0)
    real, fake = torch.rand(2, 8, 1, 16, 16) * 2 - 1

    def gradients(method):
        torch.manual_seed(5)
        views = simclr_augment(torch.cat([real, real, fake]))
        method.D.zero_grad(set_to_none=True)
        if method is damage:
            damage.masks = encoder_masks(damage.D.encoder, 0.0)
        with parametrize.cached():
            f1, f2, _ = method.D.encoder(views).chunk(3)
            t1, t2, _ = views.chunk(3)
            loss = method.real_contrastive_loss(t1, t2, f1, f2)
            loss.backward()
        return loss.detach(), {n: p.grad for n, p in method.D.named_parameters() if p.grad is not None}

    loss_sdclr, g_sdclr = gradients(damage)
    loss_simclr, g_simclr = gradients(contrad)
    assert sparsity(damage.masks) == 0.0
    assert g_sdclr.keys() == g_simclr.keys()
    assert {n.split(".")[0] for n in g_sdclr} == {"encoder", "h_r"}
    for name in g_sdclr:
        torch.testing.assert_close(g_sdclr[name], g_simclr[name], rtol=0, atol=1e-6, msg=name)
    torch.testing.assert_close(loss_sdclr, 2 * loss_simclr)  # two NT-Xent terms, one gradient
    for key, value in damage.D.state_dict().items():  # both advanced the SN vectors identically
        assert torch.equal(value, contrad.D.state_dict()[key]), key


def test_damage_supcon_fake_and_d_head_are_contrads_on_the_dense_network():
    """L_con- and L_dis of Damage GAN equal ContraD's on the same views and weights, and the pruned branch
    sends them no gradient: only L_sdclr differs."""
    damage, contrad = _methods(0.9)
    real, fake = torch.rand(2, 8, 1, 16, 16) * 2 - 1
    _, logs_damage = _d_step_gradients(damage, real, fake)
    _, logs_contrad = _d_step_gradients(contrad, real, fake)
    for key in ("loss/con_fake", "loss/dis"):
        torch.testing.assert_close(logs_damage[key], logs_contrad[key], rtol=1e-6, atol=1e-6, msg=key)
    assert not torch.allclose(logs_damage["loss/con_real"], 2 * logs_contrad["loss/con_real"])

    # the independent computation: SupCon-fake over dense h_f projections of the same three views
    torch.manual_seed(5)
    views = simclr_augment(torch.cat([real, real, fake]))
    damage.D.eval()  # the weights of the step above, without another power iteration
    with torch.no_grad():
        z = damage.D.h_f(damage.D.encoder(views))
    damage.D.train()
    expected = supcon_fake(z[:16], z[16:], 0.1)
    torch.testing.assert_close(logs_damage["loss/con_fake"], expected, rtol=1e-4, atol=1e-5)

    # gradient of L_con- alone: a hook on the pruned features sees none
    seen = []
    original = damage.real_contrastive_loss

    def spy(t1, t2, f1, f2):
        loss = original(t1, t2, f1, f2)
        return loss * 0.0  # keep only L_con- + L_dis in the total

    damage.real_contrastive_loss = spy
    import trainers.methods.damage as damage_module

    real_pruned = damage_module.pruned_forward

    def hooked(encoder, masks, x):
        out = real_pruned(encoder, masks, x)
        out.register_hook(lambda g: seen.append(float(g.abs().sum())))
        return out

    damage_module.pruned_forward = hooked
    try:
        loss, _ = _d_step_gradients(damage, real, fake)
        loss.backward()
    finally:
        damage_module.pruned_forward = real_pruned
    assert seen == [0.0]


# -- augmentations ----------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_simclr_augment_is_per_image_in_range_and_seeded(channels):
    x = torch.rand(16, channels, 16, 16) * 2 - 1
    torch.manual_seed(6)
    v1 = simclr_augment(x)
    v2 = simclr_augment(x)
    torch.manual_seed(6)
    assert torch.equal(simclr_augment(x), v1)  # the global RNG decides: resume is bit-exact
    assert v1.shape == x.shape and not torch.equal(v1, v2)
    assert v1.min() >= -1 - 1e-5 and v1.max() <= 1 + 1e-5
    same = simclr_augment(x[:1].expand(16, -1, -1, -1))
    assert (same - same[:1]).flatten(1).abs().amax(1).gt(1e-4).sum() >= 8  # each image its own draw
    xg = x.clone().requires_grad_()
    simclr_augment(xg).sum().backward()  # differentiable: the G step goes through it
    assert xg.grad is not None and xg.grad.abs().sum() > 0


@pytest.mark.parametrize("policy", sorted(CONTRASTIVE_POLICIES))
def test_contrastive_policies_shape_range_seeded_per_image_and_differentiable(policy):
    x = torch.rand(16, 1, 16, 16) * 2 - 1
    state = ckpt.rng_state()  # the loop's RNG checkpoint: restoring it replays the same views
    v1 = contrastive_augment(x, policy)
    v2 = contrastive_augment(x, policy)
    ckpt.set_rng_state(state)
    assert torch.equal(contrastive_augment(x, policy), v1)
    assert v1.shape == x.shape and not torch.equal(v1, v2)
    assert v1.min() >= -1 - 1e-5 and v1.max() <= 1 + 1e-5
    same = contrastive_augment(x[:1].expand(16, -1, -1, -1), policy)
    assert (same - same[:1]).flatten(1).abs().amax(1).gt(1e-4).sum() >= 8  # each image its own draw
    xg = x.clone().requires_grad_()
    contrastive_augment(xg, policy).sum().backward()  # the G step goes through it
    assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_digit_policies_keep_the_black_background_and_never_mirror():
    # a black image stays black (the fill is the background, not mid-grey), and a one-pixel stroke at the
    # left edge never lands in the right half (no flip; shifts of at most 1/8 of the side)
    black = -torch.ones(8, 1, 16, 16)
    stroke = black.clone()
    stroke[:, :, 4:12, 1] = 1.0
    torch.manual_seed(3)
    for policy in ("digits", "translate"):
        assert torch.allclose(contrastive_augment(black, policy), black, atol=1e-5)
        for _ in range(20):
            y = contrastive_augment(stroke, policy)
            assert (y[..., 8:] > -0.5).sum() == 0, policy
    shifted = contrastive_augment(stroke, "translate")  # whole-pixel shifts: the stroke keeps its 8 pixels
    assert ((shifted > 0).flatten(1).sum(1) <= 8).all()
    assert resolve_policy("auto", 1) == "digits" and resolve_policy("auto", 3) == "simclr"
    assert resolve_policy("translate", 3) == "translate"


def test_contrastive_aug_is_a_checked_knob_of_both_contrastive_methods():
    for method in ("contrad", "damage"):
        assert make_config({**TINY, "method": method}).knobs.contrastive_aug == "auto"
        assert make_config({**TINY, "method": method, "contrastive_aug": "translate"}).knobs.contrastive_aug == \
            "translate"
    with pytest.raises(ConfigError, match="contrastive_aug"):
        make_config({**TINY, "method": "contrad", "contrastive_aug": "flip"})


def test_diff_augment_policies():
    torch.manual_seed(7)
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    for policy in ("", "color", "translation", "cutout", "color,translation,cutout"):
        y = diff_augment(x, policy)
        assert y.shape == x.shape and (policy == "" or not torch.equal(y, x))
    cut = diff_augment(x, "cutout")
    assert ((cut == 0).all(1).flatten(1).sum(1) >= 4 * 4).all()  # a half-size square, clipped at the border
    with pytest.raises(ValueError, match="unknown DiffAugment policy 'colour'"):
        diff_augment(x, "color,colour")


# -- Damage GAN's loss is a function; its masks move in the per-step hook -------------------------------

# Per-step losses (loss/d, loss/con_real, loss/con_fake, loss/dis, loss/g; loss/d and its parts are the
# last D step's) of DAMAGE_PIN with n_dis 1 and 2, computed by the code before the refactor that moved
# the mask update out of d_loss (commit 5f2b7c9, where contrastive_aug did not exist and T was SimCLR's),
# rounded to 6 decimals, by this script run from a checkout of that commit:
#   import torch; torch.set_num_threads(1); from trainers.loop import train
#   for n_dis in (1, 2):
#       rows = []
#       train({**PIN, "n_dis": n_dis}, lambda m, c: rows.append({k: round(v, 6) for k, v in m.items()
#             if k.startswith("loss/")}), evaluator=None)   # PIN = DAMAGE_PIN without contrastive_aug, class_order
#       print(rows)
DAMAGE_PIN = {"method": "damage", "dataset": "digits", "ch": 4, "z_dim": 16, "batch_size": 8, "device": "cpu",
              "imbalance": 10, "steps": 5, "eval_every": 1, "prune_every": 2, "seed": 3, "contrastive_aug": "simclr",
              "class_order": "natural"}  # the pins predate the per-seed class order (issue 24)
DAMAGE_BEFORE = {
    1: [(9.94643, 5.44212, 3.119866, 1.384445, 0.679182),
        (9.916531, 5.429993, 3.106114, 1.380424, 0.680008),
        (9.838762, 5.423937, 3.040604, 1.374222, 0.677968),
        (9.852864, 5.421026, 3.059752, 1.372086, 0.677554),
        (9.618143, 5.426643, 2.839158, 1.352343, 0.6768)],
    2: [(9.911477, 5.429009, 3.10133, 1.381138, 0.67873),
        (9.85066, 5.420094, 3.054396, 1.37617, 0.67797),
        (9.355237, 5.419965, 2.592891, 1.34238, 0.67921),
        (9.059146, 5.42341, 2.362888, 1.272847, 0.69751),
        (9.156913, 5.420494, 2.453652, 1.282766, 0.695611)],
}


@pytest.mark.parametrize("n_dis", [1, 2])
def test_damage_losses_are_unchanged_by_the_refactor(n_dis):
    from trainers.loop import train

    keys = ["loss/d", "loss/con_real", "loss/con_fake", "loss/dis", "loss/g"]
    rows = []
    train({**DAMAGE_PIN, "n_dis": n_dis}, lambda m, c: rows.extend(m[k] for k in keys), evaluator=None)
    assert rows == pytest.approx([v for row in DAMAGE_BEFORE[n_dis] for v in row], abs=2e-6)


def test_damage_d_loss_changes_no_state_and_masks_move_only_in_before_step():
    from trainers.methods.damage import DamageGAN

    cfg = make_config({**TINY, "method": "damage", "prune_ratio": 0.5, "prune_every": 3})
    method = DamageGAN(cfg, load_data(cfg), torch.device("cpu"))
    method.before_step(0)
    masks, real = {k: v.clone() for k, v in method.masks.items()}, torch.rand(8, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        for p in prunable_convs(method.D.encoder).values():  # the weights move: new masks would differ
            raw_weight(p).mul_(torch.rand_like(raw_weight(p)) * 2)
    losses, weights = [], {k: v.clone() for k, v in method.D.state_dict().items()}
    for step in (1, 3):  # a step at which the old d_loss recomputed the masks, too
        method.D.load_state_dict(weights)  # spectral norm's power iteration advances at every call
        torch.manual_seed(0)
        losses.append(method.d_loss(real, None, real.flip(0), None, step)[0].item())
        assert all(torch.equal(method.masks[k], masks[k]) for k in masks) and method.mask_step == 0
    assert losses[0] == losses[1]  # the same arguments and RNG: the same loss, whatever the step
    for step in (1, 2):
        method.before_step(step)
        assert method.mask_step == 0
    method.before_step(3)
    fresh = encoder_masks(method.D.encoder, 0.5)
    assert method.mask_step == 3 and all(torch.equal(method.masks[k], fresh[k]) for k in fresh)
    assert any(not torch.equal(masks[k], fresh[k]) for k in fresh)


def test_real_contrastive_loss_takes_its_views_explicitly():
    """ContraD's L_con+ reads only the features; Damage GAN's pruned pass encodes the t2 it is given, in
    whatever batch order the caller built (independent computation: NT-Xent by hand on the two passes)."""
    from trainers.methods.contrad import ContraD
    from trainers.methods.damage import DamageGAN

    cfg = make_config({**TINY, "method": "damage", "prune_ratio": 0.5})
    method = DamageGAN(cfg, load_data(cfg), torch.device("cpu"))
    method.before_step(0)
    t1, t2 = torch.rand(8, 1, 16, 16) * 2 - 1, torch.rand(8, 1, 16, 16) * 2 - 1
    with parametrize.cached():
        f1, f2 = method.D.encoder(t1), method.D.encoder(t2)
        got = method.real_contrastive_loss(t1, t2, f1, f2)
        z_d = method.D.h_r(f1)
        z_p = method.D.h_r(pruned_forward(method.D.encoder, method.masks, t2))
    assert got.item() == pytest.approx(2 * nt_xent(z_d, z_p, cfg.knobs.temperature).item(), rel=1e-5)
    contrad = ContraD.real_contrastive_loss(method, None, None, f1, f2)
    assert contrad.item() == pytest.approx(nt_xent(method.D.h_r(f1), method.D.h_r(f2), 0.1).item(), rel=1e-5)


# -- every registered method: trains, reports finite losses, resumes bit-exactly -----------------------


def _step5(path):
    state, ckpt_dir = ckpt.load_latest(path)
    assert ckpt_dir.name == "step_000000005"
    return {k: state[k] for k in ("G", "D", "opt_g", "opt_d", "method")}


def _assert_equal_tree(a, b, where=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_equal_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_three_steps_and_resumes(name, tmp_path):
    # prune_every=2: Damage GAN recomputes its masks at step 4, after the resume; gsr_lambda turns
    # on the conditional GAN's regulariser; each method gets only the knobs it reads
    knobs = {"damage": {"prune_ratio": 0.5, "prune_every": 2}, "cgan": {"gsr_lambda": 0.5}}.get(name, {})
    check_contract(name, knobs, tmp_path)


@dataclass(frozen=True)
class HingeKnobs:
    margin: float = setting(1.0, "the hinge's margin", between=(0.0, INF, "(]"))


class HingeDCGAN(DCGAN):
    """A method written in a test module: the DCGAN nets under a hinge loss with its own knob. One class
    and one registry entry are all it takes; no other file of the platform changes."""

    Knobs = HingeKnobs

    def d_loss(self, real, labels, fake, fake_labels, step):
        logits, m = self.D(torch.cat([real, fake])), self.knobs.margin
        b = len(real)
        return torch.relu(m - logits[:b]).mean() + torch.relu(m + logits[b:]).mean(), {}

    def g_loss(self, fake, fake_labels, step):
        return -self.D(fake).mean(), {}


def test_a_method_added_from_a_test_module_passes_the_contract(tmp_path, monkeypatch):
    from trainers.config import flat_dict, make_config

    monkeypatch.setitem(METHODS, "hinge_dcgan", HingeDCGAN)
    check_contract("hinge_dcgan", {"margin": 0.5}, tmp_path)
    assert flat_dict(make_config({**TINY, "method": "hinge_dcgan", "margin": 0.5}))["margin"] == 0.5
    with pytest.raises(ConfigError, match="'margin' is not read by method 'dcgan'"):
        make_config({**TINY, "method": "dcgan", "margin": 0.5})


def check_contract(name, knobs, tmp_path):
    """Trains three steps with finite losses, resumes, and ends bit-exactly where an uninterrupted run does."""
    from trainers.loop import train

    cfg = {**TINY, "method": name, "steps": 3, "eval_every": 3, **knobs}
    first = []
    train(cfg, lambda m, c: first.append(m), workdir=tmp_path / "resumed", evaluator=None)
    assert [m["step"] for m in first] == [3]
    losses = {k: v for k, v in first[0].items() if k.startswith("loss/")}
    assert "loss/d" in losses and "loss/g" in losses and all(math.isfinite(v) for v in losses.values())
    if name in ("contrad", "damage"):
        assert {"loss/con_real", "loss/con_fake", "loss/dis"} <= losses.keys()
    if name == "damage":
        weights = conv_weights(Encoder(4, 16, 1))
        n = sum(w.numel() for w in weights.values())
        assert abs(first[0]["prune/sparsity"] - 0.5) <= len(weights) / n

    resumed = train({**cfg, "steps": 5}, None, workdir=tmp_path / "resumed", resume_from=tmp_path / "resumed",
                    evaluator=None)
    straight = train({**cfg, "steps": 5}, None, workdir=tmp_path / "straight", evaluator=None)
    assert resumed["step"] == 5
    loss_keys = [k for k in straight if k.startswith("loss/")]
    assert all(math.isfinite(resumed[k]) for k in loss_keys)
    assert {k: resumed[k] for k in loss_keys} == {k: straight[k] for k in loss_keys}
    _assert_equal_tree(_step5(tmp_path / "resumed"), _step5(tmp_path / "straight"))


def test_damage_masks_follow_epochs_of_data_whatever_n_dis():
    """SDCLR recomputes masks once per epoch; a loop step reads n_dis real batches, so the default
    period in loop steps is the epoch's batches divided by n_dis (independently: images / batch / n_dis)."""
    from trainers.methods.damage import DamageGAN

    for n_dis in (1, 2, 3):
        cfg = make_config({**TINY, "method": "damage", "n_dis": n_dis})
        data = load_data(cfg)
        method = DamageGAN(cfg, data, torch.device("cpu"))
        assert method.prune_every == max(1, len(data.train) // TINY["batch_size"] // n_dis)
    cfg = make_config({**TINY, "method": "damage", "n_dis": 2, "prune_every": 7})
    assert DamageGAN(cfg, load_data(cfg), torch.device("cpu")).prune_every == 7
