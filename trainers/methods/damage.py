"""Damage GAN: ContraD with its SimCLR loss replaced by SDCLR (METHODS.md).

The second real view goes through the self-damaged encoder (the same weights under a magnitude mask
that drops ``prune_ratio`` of the conv weights), replacing ContraD's dense pass over it, so a step
costs no more encoder passes than ContraD's. L_sdclr = NT-Xent(z_d, sg z_p) + NT-Xent(sg z_d, z_p):
each side is trained against the other held fixed, from one forward of each and one backward.
The pruned features of the second view also serve as that view in ContraD's fake-side SupCon term.
"""

from __future__ import annotations

import torch

from trainers.augment import simclr_augment
from trainers.losses import nt_xent
from trainers.methods.contrad import ContraD
from trainers.pruning import effective_weights, magnitude_masks, pruned_forward, sparsity


class DamageGAN(ContraD):
    masks: dict[str, torch.Tensor] | None = None

    @property
    def prune_every(self) -> int:
        return self.cfg.prune_every or self.steps_per_epoch

    def update_masks(self) -> None:
        self.masks = magnitude_masks(effective_weights(self.D.encoder), self.cfg.prune_ratio)

    def real_view_features(self, real, fake_view, step):
        if self.masks is None or step % self.prune_every == 0:
            self.update_masks()
        b = len(real)
        dense = self.D.encoder(torch.cat([simclr_augment(real), fake_view]))
        pruned = pruned_forward(self.D.encoder, self.masks, simclr_augment(real))
        return dense[:b], pruned, dense[b:]

    def real_contrastive_loss(self, f_dense, f_pruned):
        z_d, z_p = self.D.h_r(f_dense), self.D.h_r(f_pruned)
        tau = self.cfg.temperature
        return nt_xent(z_d, z_p.detach(), tau) + nt_xent(z_d.detach(), z_p, tau)

    def diagnostics(self):
        if self.masks is None:
            self.update_masks()
        return {"prune/sparsity": sparsity(self.masks)}

    def extra_state(self):
        return {"masks": self.masks} if self.masks is not None else {}

    def load_extra_state(self, state):
        if state.get("masks") is not None:
            self.masks = {k: v.to(self.device) for k, v in state["masks"].items()}
