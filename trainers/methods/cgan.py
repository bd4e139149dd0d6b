"""Conditional GAN with the group Spectral Regulariser (docs/methods.md, "Conditional GAN + gSR";
Rangwani et al., ECCV 2022, reference code val-iisc/gSRGAN).

G: class-conditional BatchNorm ``BN(x) * (1 + gamma_y) + beta_y`` in every block, the embeddings
initialised orthogonally (nets.py). D: SNDCGAN trunk with a projection head. Hinge loss. Fake labels are
uniform over the classes (base.py), as in gSRGAN's sampler; only real batches follow the long tail.
Options: ``gsr_lambda`` (gSR on the embedding rows gamma_y, beta_y, in the G loss), ``lecam_lambda``
(LeCam with zero-debiased EMA anchors of D's real/fake outputs, in the D loss), ``diffaugment`` (the same policy on
real and fake images before D, in both steps).

Logs: ``loss/g`` is the adversarial G term alone (comparable with gSR on and off), ``loss/gsr`` the
penalty as added to it (``gsr_lambda / (L K)`` included), ``loss/lecam`` the unweighted LeCam term;
every report carries ``gsr/sigma_max/<k>``, the exact largest singular value of class k's gamma
matrix, maximised over layers (the paper's spectral-explosion plot), whether gSR is on or not.

``default_n_dis = 2``: the paper's SNGAN used 5 D steps per G step on GPUs (the GPU presets say so). A
D step costs about as much as a G step here, so 5 would make each G step ~2x dearer than 2 on a CPU
budget counted in G steps; 2 still gives D the extra step the projection cGAN relies on.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from trainers.augment import diff_augment
from trainers.losses import hinge_d, hinge_g
from trainers.methods.base import GANMethod
from trainers.nets import ConditionalBatchNorm2d, Generator, ProjectionDiscriminator
from trainers.regularizers import effective_number_weights, group_sigma_max, group_spectral_penalty, lecam
from trainers.fields import INF, ConfigError, setting


@dataclass(frozen=True)
class CGANKnobs:
    gsr_lambda: float = setting(0.0, "weight of the group spectral regulariser (0 = off; divided by layers x classes)",
                                between=(0.0, INF, "[]"))
    gsr_beta: float = setting(0.999, "beta of the effective-number class weights", between=(0.0, 1.0, "[)"))
    gsr_power_iters: int = setting(4, "power-iteration steps per G step (gSRGAN's num_power_iter; the vectors "
                                      "persist across steps, 10x this many on the first)", positive=True)
    lecam_lambda: float = setting(0.0, "weight of the LeCam regulariser in the D loss (0 = off)",
                                  between=(0.0, INF, "[]"))
    lecam_decay: float = setting(0.99, "EMA decay of LeCam's anchors", between=(0.0, 1.0, "[]"))
    diffaugment: str = setting("", "DiffAugment policy on real and fake images, e.g. color,translation,cutout")


class ConditionalGAN(GANMethod):
    Knobs = CGANKnobs
    conditional = True
    default_n_dis = 2
    step_cost = 1.5  # two D steps a G step (a D step costs about a G step)
    report_figures = ("gsr_sigma_max",)  # its gSR regulariser logs gsr/sigma_max/<k>

    def __init__(self, cfg, data, device):
        super().__init__(cfg, data, device)
        self.cbn = [m for m in self.G.modules() if isinstance(m, ConditionalBatchNorm2d)]
        self.class_weights = effective_number_weights(self.train_counts, self.knobs.gsr_beta).to(device)
        # persistent power-iteration vectors (shape key -> (N, a)); seeded apart from the global RNG
        # so switching gSR on does not shift the rest of the run's random stream
        self.gsr_vectors: dict[str, torch.Tensor] = {}
        self._gsr_generator = torch.Generator().manual_seed(int(cfg.seed) + 104729)
        # EMA of mean D(real), mean D(fake) from 0, and its number of updates for the zero-debiasing
        self.lecam_anchors = torch.zeros(2, device=device)
        self.lecam_updates = 0
        self.augment = lambda x: x
        if self.knobs.diffaugment:
            self.augment = functools.partial(diff_augment, policy=self.knobs.diffaugment)
            try:  # a misspelt policy is a config error now, not a traceback at the first D step
                with torch.random.fork_rng(devices=[]):
                    self.augment(torch.zeros(1, self.channels, self.resolution, self.resolution))
            except ValueError as e:
                raise ConfigError(f"config key 'diffaugment' = {self.knobs.diffaugment!r}: {e}") from None

    def build_nets(self):
        cfg = self.cfg
        norm = functools.partial(ConditionalBatchNorm2d, num_classes=self.num_classes)
        return (Generator(cfg.z_dim, cfg.ch, self.resolution, self.channels, norm=norm),
                ProjectionDiscriminator(cfg.ch, self.resolution, self.channels, self.num_classes))

    def d_loss(self, real, labels, fake, fake_labels, step):
        logits = self.D(self.augment(torch.cat([real, fake])), torch.cat([labels, fake_labels]))
        real_logits, fake_logits = logits[: len(real)], logits[len(real):]
        loss = hinge_d(real_logits, fake_logits)
        logs = {}
        if self.knobs.lecam_lambda > 0:
            decay = self.knobs.lecam_decay
            means = torch.stack([real_logits.mean(), fake_logits.mean()]).detach()
            self.lecam_anchors.mul_(decay).add_(means, alpha=1.0 - decay)
            self.lecam_updates += 1
            # lecam-gan's StyleGAN2 EMA (stylegan2/lecam_loss.py): decay 0.99 with zero_debias=True, so the
            # anchors are the outputs' mean from the first step instead of starting near 0
            anchors = self.lecam_anchors / (1.0 - decay ** self.lecam_updates) if decay < 1 else self.lecam_anchors
            reg = lecam(real_logits, fake_logits, anchors[0], anchors[1])
            loss = loss + self.knobs.lecam_lambda * reg
            logs["loss/lecam"] = reg.detach()
        return loss, logs

    def g_loss(self, fake, fake_labels, step):
        loss = hinge_g(self.D(self.augment(fake), fake_labels))
        logs = {"loss/g": loss.detach()}
        if self.knobs.gsr_lambda > 0:
            penalty = group_spectral_penalty(
                [m.gamma.weight for m in self.cbn], [m.beta.weight for m in self.cbn], self.class_weights,
                self.gsr_vectors, n_iter=self.knobs.gsr_power_iters, lam=self.knobs.gsr_lambda,
                generator=self._gsr_generator)
            loss = loss + penalty
            logs["loss/gsr"] = penalty.detach()
        return loss, logs

    @torch.no_grad()
    def sigma_max_per_layer(self) -> torch.Tensor:
        """Exact sigma_max of every class's gamma matrix: (layers, K)."""
        return torch.stack([group_sigma_max(m.gamma.weight) for m in self.cbn])

    def diagnostics(self):
        per_class = self.sigma_max_per_layer().amax(0).tolist()
        return {f"gsr/sigma_max/{k}": v for k, v in enumerate(per_class)}

    @classmethod
    def metric_names(cls, knobs, num_classes):
        return ([f"gsr/sigma_max/{k}" for k in range(num_classes)] + ["loss/gsr"] * (knobs.gsr_lambda > 0)
                + ["loss/lecam"] * (knobs.lecam_lambda > 0))

    def extra_state(self):
        return {"gsr_vectors": {k: v.clone() for k, v in self.gsr_vectors.items()},
                "gsr_generator": self._gsr_generator.get_state(),
                "lecam_anchors": self.lecam_anchors.clone(), "lecam_updates": self.lecam_updates}

    def load_extra_state(self, state):
        if not state:
            return
        self.gsr_vectors = {k: v.to(self.device) for k, v in state["gsr_vectors"].items()}
        self._gsr_generator.set_state(state["gsr_generator"])
        self.lecam_anchors = state["lecam_anchors"].to(self.device)
        self.lecam_updates = int(state["lecam_updates"])
