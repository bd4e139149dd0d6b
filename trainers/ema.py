"""``g_ema``: an exponential moving average of G's weights, the generator a trial is scored with when on.

BigGAN (``ema`` / ``ema_start`` in BigGAN-PyTorch's ``utils.ema``), StudioGAN (``apply_g_ema``,
``g_ema_decay``, ``g_ema_start``) and StyleGAN2-ADA (``G_ema``, ``ema_kimg`` with a ramp-up) all train G
as usual and evaluate a copy whose weights follow G's as an EMA: the copy is what G "averages to" over
its last few hundred steps, so its samples move less from one evaluation to the next and from one seed to
another than G's own. Training is unchanged (the copy never feeds back), so the same seed gives the same
G, D and losses with the EMA on or off.

The rule, written as StudioGAN's ``Ema.update`` and BigGAN's: after every G step, with ``done`` the G
steps taken so far (1 after the first),

    p_ema <- decay * p_ema + (1 - decay) * p      for every parameter, once done > start,
    p_ema <- p                                    before that (the copy follows G exactly),
    b_ema <- b                                    for every buffer (BatchNorm's running statistics),

so ``start`` steps of warm-up keep G's first, fast-moving weights out of the average (BigGAN's and
StudioGAN's ``ema_start``), and the BatchNorm statistics are G's own, as StudioGAN copies them (the
averaged weights with G's current statistics; StudioGAN can re-estimate them instead, which costs a pass).
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator

import torch
from torch import nn


class GEma:
    """The EMA copy of ``G`` (``self.G``), updated by ``update`` after each G step."""

    def __init__(self, G: nn.Module, decay: float, start: int = 0):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"g_ema decay {decay} must lie in (0, 1)")
        self.decay = float(decay)
        self.start = int(start)
        self.G = copy.deepcopy(G).requires_grad_(False)
        self.G.eval()  # only ever sampled; its BatchNorm statistics are copied from G, never estimated
        self.updates = 0  # G steps averaged so far (``done`` of the rule above): checkpointed

    @torch.no_grad()
    def update(self, G: nn.Module) -> None:
        """After one G step of ``G``."""
        self.updates += 1
        decay = self.decay if self.updates > self.start else 0.0
        for p_ema, p in zip(self.G.parameters(), G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, decay))  # p + decay (p_ema - p)
        for b_ema, b in zip(self.G.buffers(), G.buffers()):
            b_ema.copy_(b)

    @contextlib.contextmanager
    def in_place_of(self, method: Any) -> Iterator[None]:
        """``method.G`` is the EMA copy inside the block (what the evaluator samples), G again after it."""
        G = method.G
        method.G = self.G
        try:
            yield
        finally:
            method.G = G

    def state_dict(self) -> dict[str, Any]:
        return {"G": self.G.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.updates = int(state["updates"])
