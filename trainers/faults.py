"""The fault suite's injected faults (tests/test_faults.py), all of them here; never set in a real study.

Production code reaches them through one hook each: the loop asks ``injector(cfg, workdir)`` once per
run (None unless a ``fault.*`` key asks for a fault in this trial) and calls what it gets at every
step; the study's driver adds ``driver_callbacks()`` to Ray's callbacks (none unless its environment
asks for a crash).

Trial-level faults are config keys (``fault.*``): the D loss becomes NaN at a step (-> the loop's
``DivergedError``), a RuntimeError is raised at a step, or the process SIGKILLs itself at a step, once
per work dir (the restarted trial gets past it); ``fault.seeds`` limits them to those trial seeds.
The driver-level fault is an environment variable, ``LTGAN_TEST_DRIVER_CRASH_AFTER=N``: the driver
raises at the first trial result after N trials completed in this process, as a bug or a full disk in
the driver would.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from trainers.fields import setting

CRASH_ENV = "LTGAN_TEST_DRIVER_CRASH_AFTER"


@dataclass(frozen=True)
class FaultConfig:
    """Fault injection for the fault suite (``fault.*`` keys); never set in a real study."""

    nan_at_step: int | None = setting(None, "the D loss becomes NaN at this step (-> DivergedError)")
    raise_at_step: int | None = setting(None, "a RuntimeError is raised at this step")
    kill_at_step: int | None = setting(None, "the process SIGKILLs itself at this step, once per work dir")
    seeds: tuple[int, ...] | None = setting(None, "the trial seeds the faults above apply to (e.g. [1]: only seed "
                                                  "1's replicate fails); None = every seed")


Injector = Callable[[int, dict[str, torch.Tensor]], None]


def injector(cfg: Any, workdir: Path) -> Injector | None:
    """The loop's hook: what to call after each step's losses (``step``, the step's logs), or None when
    no ``fault.*`` key is set for this trial's seed (``cfg`` is the trial's ``TrainConfig``)."""
    fault: FaultConfig = cfg.fault
    if all(v is None for v in vars(fault).values()):
        return None
    if fault.seeds is not None and cfg.seed not in fault.seeds:
        return None

    def inject(step: int, logs: dict[str, torch.Tensor]) -> None:
        if fault.raise_at_step == step:
            raise RuntimeError(f"injected fault: raise at step {step}")
        if fault.kill_at_step == step:
            marker = workdir / ".fault-killed"
            if not marker.exists():  # once: the restarted trial must get past this step
                marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        if fault.nan_at_step == step:
            logs["loss/d"] = torch.tensor(float("nan"))

    return inject


class InjectedDriverCrash(RuntimeError):
    """The driver's test-only crash (``LTGAN_TEST_DRIVER_CRASH_AFTER``)."""


def driver_callbacks() -> list:
    """The driver's hook: the Tune callbacks of the faults its environment asks for (``search.run`` adds
    them). Ray is imported only when a crash is asked for: the trainers otherwise never import it. The
    variable is read at each event, so the study resumed without it (its callbacks restored from Ray's
    experiment state) runs normally."""
    if os.environ.get(CRASH_ENV) is None:
        return []
    from ray import tune

    class InjectedCrash(tune.Callback):
        def __init__(self):
            self.completed = 0

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.completed += 1

        def on_trial_result(self, iteration, trials, trial, result, **info):
            after = os.environ.get(CRASH_ENV)
            if after is not None and self.completed >= int(after):
                raise InjectedDriverCrash(f"injected by {CRASH_ENV}={after} after {self.completed} "
                                          f"completed trials")

    return [InjectedCrash()]
