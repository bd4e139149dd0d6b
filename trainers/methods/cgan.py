"""Conditional GAN with the group Spectral Regulariser (METHODS.md; Rangwani et al., ECCV 2022).

G: class-conditional BatchNorm in every block. D: SNDCGAN trunk with a projection head. Hinge loss.
Options: ``gsr_lambda`` (gSR on the conditional-BN gains and biases, G loss), ``lecam_lambda``
(LeCam with EMA anchors of D's real/fake outputs, D loss), ``diffaugment`` (the same policy on real
and fake images before D, in both steps); class-balanced real batches are the loop's
``class_balanced_sampling``. Fake labels follow the training prior.

Logs: ``loss/g`` is the adversarial G term alone (comparable with gSR on and off), ``loss/gsr`` the
penalty as added to it (``gsr_lambda`` included), ``loss/lecam`` the unweighted LeCam term; every
report carries ``gsr/sigma_max/<k>``, the exact largest singular value of class k's gain matrix,
maximised over layers (the paper's spectral-explosion plot), whether gSR is on or not.

``default_n_dis = 2``: the paper's SNGAN used 5 D steps per G step on GPUs. A D step costs about as
much as a G step here, so 5 would make each G step ~2x dearer than 2 on a CPU budget counted in G
steps; 2 still gives D the extra step the projection cGAN relies on. ``n_dis=5`` is the paper's.
"""

from __future__ import annotations

import functools

import torch

from trainers.augment import diff_augment
from trainers.config import ConfigError
from trainers.losses import hinge_d, hinge_g
from trainers.methods.base import GANMethod
from trainers.nets import ConditionalBatchNorm2d, Generator, ProjectionDiscriminator
from trainers.regularizers import (effective_number_weights, group_sigma_max, group_spectral_penalty,
                                   lecam)


class ConditionalGAN(GANMethod):
    conditional = True
    default_n_dis = 2

    def __init__(self, cfg, data, device):
        super().__init__(cfg, data, device)
        self.cbn = [m for m in self.G.modules() if isinstance(m, ConditionalBatchNorm2d)]
        self.class_weights = effective_number_weights(self.train_counts, cfg.gsr_beta).to(device)
        # persistent power-iteration vectors (shape key -> (N, a)); seeded apart from the global RNG
        # so switching gSR on does not shift the rest of the run's random stream
        self.gsr_vectors: dict[str, torch.Tensor] = {}
        self._gsr_generator = torch.Generator().manual_seed(int(cfg.seed) + 104729)
        self.lecam_anchors = torch.zeros(2, device=device)  # EMA of mean D(real), mean D(fake)
        self.augment = lambda x: x
        if cfg.diffaugment:
            self.augment = functools.partial(diff_augment, policy=cfg.diffaugment)
            try:  # a misspelt policy is a config error now, not a traceback at the first D step
                with torch.random.fork_rng(devices=[]):
                    self.augment(torch.zeros(1, self.channels, self.resolution, self.resolution))
            except ValueError as e:
                raise ConfigError(f"config key 'diffaugment' = {cfg.diffaugment!r}: {e}") from None

    def build_nets(self):
        cfg = self.cfg
        norm = functools.partial(ConditionalBatchNorm2d, num_classes=self.num_classes)
        return (Generator(cfg.z_dim, cfg.ch, self.resolution, self.channels, norm=norm),
                ProjectionDiscriminator(cfg.ch, self.resolution, self.channels, self.num_classes))

    def d_step(self, real, labels, step):
        fake_labels = self.sample_labels(len(real))
        with torch.no_grad():
            fake = self.G(self.sample_z(len(real)), fake_labels)
        logits = self.D(self.augment(torch.cat([real, fake])), torch.cat([labels, fake_labels]))["adv"]
        real_logits, fake_logits = logits[: len(real)], logits[len(real):]
        loss = hinge_d(real_logits, fake_logits)
        logs = {}
        if self.cfg.lecam_lambda > 0:
            decay = self.cfg.lecam_decay
            means = torch.stack([real_logits.mean(), fake_logits.mean()]).detach()
            self.lecam_anchors.mul_(decay).add_(means, alpha=1.0 - decay)
            reg = lecam(real_logits, fake_logits, self.lecam_anchors[0], self.lecam_anchors[1])
            loss = loss + self.cfg.lecam_lambda * reg
            logs["loss/lecam"] = reg.detach()
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return {"loss/d": loss.detach(), **logs}

    def g_step(self, step):
        labels = self.sample_labels(self.cfg.batch_size)
        fake = self.G(self.sample_z(self.cfg.batch_size), labels)
        self.D.requires_grad_(False)  # the G step needs no D weight gradients
        try:
            loss = hinge_g(self.D(self.augment(fake), labels)["adv"])
        finally:
            self.D.requires_grad_(True)
        logs = {"loss/g": loss.detach()}
        if self.cfg.gsr_lambda > 0:
            penalty = group_spectral_penalty(
                [m.gain.weight for m in self.cbn], [m.bias.weight for m in self.cbn], self.class_weights,
                self.gsr_vectors, n_iter=self.cfg.gsr_power_iters, lam=self.cfg.gsr_lambda,
                generator=self._gsr_generator)
            loss = loss + penalty
            logs["loss/gsr"] = penalty.detach()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return logs

    @torch.no_grad()
    def sigma_max_per_layer(self) -> torch.Tensor:
        """Exact sigma_max of every class's gain matrix: (layers, K)."""
        return torch.stack([group_sigma_max(m.gain.weight) for m in self.cbn])

    def diagnostics(self):
        # the paper's spectral-explosion plot: per class, the largest gain sigma_max over layers
        per_class = self.sigma_max_per_layer().amax(0).tolist()
        return {f"gsr/sigma_max/{k}": v for k, v in enumerate(per_class)}

    def extra_state(self):
        return {"gsr_vectors": {k: v.clone() for k, v in self.gsr_vectors.items()},
                "gsr_generator": self._gsr_generator.get_state(),
                "lecam_anchors": self.lecam_anchors.clone()}

    def load_extra_state(self, state):
        if not state:
            return
        self.gsr_vectors = {k: v.to(self.device) for k, v in state["gsr_vectors"].items()}
        self._gsr_generator.set_state(state["gsr_generator"])
        self.lecam_anchors = state["lecam_anchors"].to(self.device)
