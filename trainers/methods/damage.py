"""Damage GAN: ContraD with its SimCLR term replaced by SDCLR (docs/methods.md, "Damage GAN").

What differs from ContraD is this file. The real-side contrastive term is SDCLR's
(``prune/prune_simCLR.py`` of VITA-Group/SDCLR): z_d = h_r f(t1 x) from the dense encoder, z_p = h_r
f_pruned(t2 x) from the self-damaged one — the same weights under magnitude masks that drop
``prune_ratio`` of each conv's weights (pruning.py) — and

    L_sdclr = NT-Xent(z_d, sg z_p) + NT-Xent(sg z_d, z_p)

(each side trained against the other held fixed: SimCLR's gradient from one backward; its value,
``loss/con_real``, is twice an NT-Xent). Everything else is ContraD's, on the dense network: L_con-
takes the dense h_f projections of t1 x, t2 x and the fakes, and L_dis the dense features. So a step
runs ContraD's dense pass over the 3B views plus a pruned pass over the B views t2 x: 4B images
through the encoder where ContraD runs 3B, about 4/3 of its D step.

The masks are recomputed from the current weights every ``prune_every`` steps (default: once per pass
over the training set, counted in loop steps) by the method's per-step hook ``before_step``, which the
loop calls once per step before its D steps — never inside a loss, so ``d_loss`` is a function of its
arguments, the weights and the masks — and checkpointed with the step they were computed at.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.utils import parametrize

from trainers.losses import nt_xent
from trainers.methods.contrad import ContraD, ContraDKnobs
from trainers.pruning import encoder_masks, pruned_forward, sparsity
from trainers.fields import setting


@dataclass(frozen=True)
class DamageKnobs(ContraDKnobs):
    prune_ratio: float = setting(0.9, "fraction of each encoder conv's weights the SDCLR mask removes",
                                 between=(0.0, 1.0, "[)"))
    prune_every: int | None = setting(None, "steps between mask updates; None = once per pass over the data "
                                            "(SDCLR's once per epoch; a step reads n_dis batches)", positive=True)


class DamageGAN(ContraD):
    Knobs = DamageKnobs
    step_cost = 1.85  # ContraD's plus the pruned encoder's pass over a view of the reals
    masks = None  # conv name -> 0/1 mask
    mask_step = -1  # the step the masks were computed at

    @property
    def prune_every(self) -> int:
        # a loop step draws n_dis real batches: an epoch is steps_per_epoch / n_dis loop steps
        return self.knobs.prune_every or max(1, self.steps_per_epoch // self.n_dis)

    def before_step(self, step):
        # once per step even with n_dis > 1 D steps, and not again at the step a resume starts from
        if self.masks is None or (step % self.prune_every == 0 and step != self.mask_step):
            self.masks, self.mask_step = encoder_masks(self.D.encoder, self.knobs.prune_ratio), step

    def d_loss(self, real, labels, fake, fake_labels, step):
        # the dense and the pruned pass read one W / sigma(W) per conv: M ⊙ (W / sigma(W)) is pruned
        with parametrize.cached():
            return super().d_loss(real, labels, fake, fake_labels, step)

    def real_contrastive_loss(self, t1, t2, f1, f2):
        """L_sdclr between the dense features ``f1`` of ``t1`` and the pruned features of ``t2``."""
        f2_pruned = pruned_forward(self.D.encoder, self.masks, t2)
        z_d, z_p = self.D.h_r(torch.cat([f1, f2_pruned])).chunk(2)
        tau = self.knobs.temperature
        return nt_xent(z_d, z_p.detach(), tau) + nt_xent(z_d.detach(), z_p, tau)

    def diagnostics(self):
        masks = self.masks if self.masks is not None else encoder_masks(self.D.encoder, self.knobs.prune_ratio)
        return {"prune/sparsity": sparsity(masks)}

    @classmethod
    def metric_names(cls, knobs, num_classes):
        return [*super().metric_names(knobs, num_classes), "prune/sparsity"]

    def extra_state(self):
        if self.masks is None:
            return {}
        return {"masks": {k: v.clone() for k, v in self.masks.items()}, "mask_step": self.mask_step}

    def load_extra_state(self, state):
        if state.get("masks") is not None:
            self.masks = {k: v.to(self.device) for k, v in state["masks"].items()}
            self.mask_step = int(state["mask_step"])
