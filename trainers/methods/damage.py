"""Damage GAN: ContraD with its SimCLR loss replaced by SDCLR (METHODS.md).

The second real view goes through the self-damaged encoder (the same weights under a magnitude mask
that drops ``prune_ratio`` of the conv weights, see pruning.py) instead of ContraD's dense pass over
it, so a step costs no more encoder passes than ContraD's and holds no model copy.
L_sdclr = NT-Xent(z_d, sg z_p) + NT-Xent(sg z_d, z_p), z_d = h_r f(t1 x), z_p = h_r f_pruned(t2 x):
each side is trained against the other held fixed, from one forward of each and one backward (its
gradient is SimCLR's; its value, logged as ``loss/con_real``, is twice an NT-Xent).
The pruned features of t2 x also stand for that view in ContraD's fake-side SupCon term.

The masks are recomputed from the current weights every ``prune_every`` steps (default: once per
pass over the training set) and checkpointed with the step they were computed at.
"""

from __future__ import annotations

import torch

from trainers.losses import nt_xent
from trainers.methods.contrad import ContraD
from trainers.pruning import effective_weights, magnitude_masks, pruned_forward, sparsity


class DamageGAN(ContraD):
    masks: dict[str, torch.Tensor] | None = None
    mask_step: int = -1  # the step the masks were computed at

    @property
    def prune_every(self) -> int:
        return self.cfg.prune_every or self.steps_per_epoch

    def current_masks(self) -> dict[str, torch.Tensor]:
        return magnitude_masks(effective_weights(self.D.encoder), self.cfg.prune_ratio)

    def encode(self, views, step):
        # once per step even with n_dis > 1 D steps, and not again at the step a resume starts from
        if self.masks is None or (step % self.prune_every == 0 and step != self.mask_step):
            self.masks, self.mask_step = self.current_masks(), step
        real1, real2, fake = views.chunk(3)
        # the pruned pass first: it starts its spectral-norm step from copies of the vectors the dense
        # pass then advances, so at prune_ratio 0 both passes use the same sigma (see pruning.py)
        pruned = pruned_forward(self.D.encoder, self.masks, real2)
        dense1, dense_fake = self.D.encoder(torch.cat([real1, fake])).chunk(2)
        return dense1, pruned, dense_fake

    def real_contrastive_loss(self, f_dense, f_pruned):
        z_d, z_p = self.D.h_r(torch.cat([f_dense, f_pruned])).chunk(2)
        tau = self.cfg.temperature
        return nt_xent(z_d, z_p.detach(), tau) + nt_xent(z_d.detach(), z_p, tau)

    def diagnostics(self):
        masks = self.masks if self.masks is not None else self.current_masks()
        return {"prune/sparsity": sparsity(masks)}

    def extra_state(self):
        if self.masks is None:
            return {}
        return {"masks": {k: v.clone() for k, v in self.masks.items()}, "mask_step": self.mask_step}

    def load_extra_state(self, state):
        if state.get("masks") is not None:
            self.masks = {k: v.to(self.device) for k, v in state["masks"].items()}
            self.mask_step = int(state["mask_step"])
