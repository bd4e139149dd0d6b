"""The method interface every GAN variant implements over the shared loop.

A method owns its networks and optimisers and implements only what differs: ``d_step`` and
``g_step`` (each returns a dict of detached scalar tensors to log). Everything else here has a
default that fits most methods.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainers.config import TrainConfig
from trainers.data import DataBundle


class GANMethod:
    conditional = False  # True: G takes class labels, evaluation samples each class directly
    default_n_dis = 1

    def __init__(self, cfg: TrainConfig, data: DataBundle, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.num_classes = data.num_classes
        self.channels = data.channels
        self.resolution = data.resolution
        self.train_counts = list(data.train_counts)
        self.steps_per_epoch = max(1, len(data.train) // cfg.batch_size)
        self.G, self.D = self.build_nets()
        self.G.to(device)
        self.D.to(device)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=betas)

    # -- to implement ---------------------------------------------------------------------------
    def build_nets(self) -> tuple[nn.Module, nn.Module]:
        raise NotImplementedError

    def d_step(self, real: torch.Tensor, labels: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def g_step(self, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # -- shared helpers -------------------------------------------------------------------------
    @property
    def n_dis(self) -> int:
        return self.cfg.n_dis or self.default_n_dis

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if generator is None:
            return torch.randn(n, self.cfg.z_dim, device=self.device)
        return torch.randn(n, self.cfg.z_dim, generator=generator).to(self.device)

    def sample_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Labels for conditional fakes: the training prior (what the G is asked to reproduce)."""
        prior = torch.tensor(self.train_counts, dtype=torch.float)
        return torch.multinomial(prior, n, replacement=True, generator=generator).to(self.device)

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

    def extra_state(self) -> dict[str, Any]:
        """Method state beyond nets and optimisers (masks, EMA anchors, ...)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(), "extra": self.extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.load_extra_state(state.get("extra", {}))
