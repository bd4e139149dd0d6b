"""What a GAN method is, for the shared loop: networks, its own knobs, and two losses.

A method builds its G and D (``build_nets``) and computes ``d_loss`` and ``g_loss``, each returning
``(loss, logs)`` with ``logs`` a dict of detached scalar tensors. Losses are functions of their
arguments and the method's state; state that changes with training (Damage GAN's pruning masks) is
updated in ``before_step``, which the loop calls once per step, before the step's D steps. The loop (``trainers.loop``) owns
everything else, once for every method: the optimisers and their zero_grad/backward/step, the
learning-rate warm-up, sampling the fakes each loss is given, and freezing D during the G step.
A method's knobs are a frozen dataclass of ``setting`` fields named ``Knobs`` on its class.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainers.data import DataBundle
from trainers.settings import NoKnobs, TrainConfig

Logs = dict[str, torch.Tensor]


class GANMethod:
    Knobs = NoKnobs  # the method's own config keys (a frozen dataclass of settings)
    conditional = False  # True: G takes class labels; fakes get uniform labels, evaluation samples each class
    default_n_dis = 1  # D steps per G step when the config's n_dis is None
    baseline = False  # True for the one method a report compares every other method against
    # a loop step's cost at the method's default n_dis relative to DCGAN's, on the CPU at the main job's
    # scale (16x16, width 16, batch 32; trial timings of sdclr_ablation, benchmarks/method_step_cost.py):
    # a grid runs its dearest cells first so that the workers finish together; never used in a result
    step_cost = 1.0
    report_figures: tuple[str, ...] = ()  # method-specific report figures (names in search.report.figures)

    def __init__(self, cfg: TrainConfig, data: DataBundle, device: torch.device):
        self.cfg = cfg
        self.knobs = cfg.knobs
        self.device = device
        self.num_classes = data.num_classes
        self.channels = data.channels
        self.resolution = data.resolution
        self.train_counts = list(data.train_counts)
        self.steps_per_epoch = max(1, len(data.train) // cfg.batch_size)
        self.G, self.D = self.build_nets()
        self.G.to(device)
        self.D.to(device)

    # -- what a method defines --------------------------------------------------------------------
    def build_nets(self) -> tuple[nn.Module, nn.Module]:
        raise NotImplementedError

    def d_loss(self, real: torch.Tensor, labels: torch.Tensor, fake: torch.Tensor,
               fake_labels: torch.Tensor | None, step: int) -> tuple[torch.Tensor, Logs]:
        """D's loss on a real batch (with its labels) and detached fakes; ``loss/d`` defaults to it."""
        raise NotImplementedError

    def g_loss(self, fake: torch.Tensor, fake_labels: torch.Tensor | None, step: int) -> tuple[torch.Tensor, Logs]:
        """G's loss on fakes that carry G's graph (D is frozen while it runs); ``loss/g`` defaults to it."""
        raise NotImplementedError

    def before_step(self, step: int) -> None:
        """Once per loop step ``step``, before its ``n_dis`` D steps and its G step (e.g. recompute masks)."""

    # -- shared -----------------------------------------------------------------------------------
    @property
    def n_dis(self) -> int:
        return self.cfg.n_dis or self.default_n_dis

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if generator is None:
            return torch.randn(n, self.cfg.z_dim, device=self.device)
        return torch.randn(n, self.cfg.z_dim, generator=generator).to(self.device)

    def sample_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Labels of conditional fakes during training: uniform over the classes, whatever the training
        prior (gSRGAN's and StudioGAN's samplers), so every class's conditioning gets as many G updates."""
        if generator is None:
            return torch.randint(self.num_classes, (n,), device=self.device)
        return torch.randint(self.num_classes, (n,), generator=generator).to(self.device)

    def fakes(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``n`` training fakes from G as it is (train mode), with their labels if conditional."""
        z = self.sample_z(n)
        if not self.conditional:
            return self.G(z), None
        labels = self.sample_labels(n)
        return self.G(z, labels), labels

    @torch.no_grad()
    def generate(self, n: int, labels: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images in [-1, 1] from G in eval mode (conditional methods use ``labels``)."""
        was_training = self.G.training
        self.G.eval()
        try:
            z = self.sample_z(n, generator)
            if self.conditional:
                y = labels if labels is not None else self.sample_labels(n, generator)
                return self.G(z, y.to(self.device))
            return self.G(z)
        finally:
            self.G.train(was_training)

    def diagnostics(self) -> dict[str, float]:
        """Method-specific metrics added to every report (e.g. ``prune/sparsity``)."""
        return {}

    @classmethod
    def metric_names(cls, knobs: Any, num_classes: int) -> list[str]:
        """The names this method adds to every report beyond the loop's ``loss/d`` and ``loss/g``: its
        losses' logs and its ``diagnostics`` (``trainers.metrics.names`` gathers every reported name)."""
        return []

    def extra_state(self) -> dict[str, Any]:
        """Method state beyond the nets (masks, EMA anchors, power-iteration vectors, ...)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass
