"""The one training loop: ``train(cfg, report, should_stop)``.

It builds data, networks and the method from plain-dict registries and owns every optimisation step,
once for all methods (as ContraD's ``train_gan.py`` does for its variants): the two Adam optimisers,
the linear learning-rate warm-up, ``n_dis`` D steps per G step (each on a new real batch and new
detached fakes), zero_grad/backward/step, and D frozen while G's loss runs. A method only computes
``d_loss`` and ``g_loss``, and may update its own state once per step in ``before_step``. Every ``eval_every`` steps (and at the end) it evaluates, writes a
checkpoint atomically and calls ``report(metrics, checkpoint_dir)``. With ``g_ema`` > 0 an EMA copy of
G's weights (``trainers.ema``) is updated after every G step, checkpointed with the rest, and is the
generator the evaluation samples. It knows nothing of Ray, Optuna or MLflow.
"""

from __future__ import annotations

import contextlib
import functools
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from trainers import checkpoint as ckpt
from trainers import faults
from trainers.config import make_config, to_dict
from trainers.data import BatchSampler, DataBundle, load_data, to_float
from trainers.ema import GEma
from trainers.methods import GANMethod, get_method
from trainers.settings import TrainConfig

Report = Callable[[dict[str, Any], str], None]
# what the loop itself adds to every report (beside the method's logs and diagnostics and the evaluator's
# metrics: trainers.metrics.names joins them): the Stepper's losses and the timings of train()
REPORTED = ("step", "epoch", "time/step_s", "time/eval_s", "loss/d", "loss/g")


class DivergedError(RuntimeError):
    """A loss became NaN or infinite: the trial ends, it does not report a fake metric."""

    def __init__(self, step: int, losses: dict[str, float]):
        self.step = step
        self.losses = losses
        shown = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
        super().__init__(f"training diverged at step {step} ({shown}); "
                         f"lower lr_d/lr_g or the regulariser weights")


@contextlib.contextmanager
def frozen(net: torch.nn.Module):
    """No weight gradients for ``net`` (D during the G step: G's loss still flows through it)."""
    net.requires_grad_(False)
    try:
        yield
    finally:
        net.requires_grad_(True)


class Stepper:
    """The one place optimisation happens, for every method: its two Adam optimisers, the learning-rate
    warm-up, and each D or G step (fakes, the method's loss, zero_grad/backward/step), with the speed
    options a GPU user expects: bf16 autocast of the forward passes, compiled nets, channels-last."""

    def __init__(self, method: GANMethod, cfg: TrainConfig):
        self.method = method
        self.warmup_steps = cfg.warmup_steps
        decay_from = round(cfg.lr_decay_start * cfg.steps)
        self.decay_from = decay_from if decay_from < cfg.steps else None
        self.steps = cfg.steps
        self.autocast = functools.partial(torch.autocast, device_type=method.device.type, dtype=torch.bfloat16,
                                          enabled=cfg.amp == "bf16")
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        if cfg.channels_last:
            method.G.to(memory_format=torch.channels_last)
            method.D.to(memory_format=torch.channels_last)
        if cfg.compile:
            compile_nets(method)
        # foreach: Adam's multi-tensor update, as PyTorch picks on CUDA, on every device. On CPU it is the same
        # arithmetic as the per-parameter loop PyTorch picks there (bit-identical: tests/test_loop.py), about
        # 1% faster (300 Damage GAN steps of the main job's size: 25.8 s against 26.1 s, one CPU thread)
        adam = functools.partial(torch.optim.Adam, betas=(cfg.beta1, cfg.beta2), foreach=True)
        self.opt_g = adam(method.G.parameters(), lr=cfg.lr_g)
        self.opt_d = adam(method.D.parameters(), lr=cfg.lr_d)
        self.base_lr = ((self.opt_g, cfg.lr_g), (self.opt_d, cfg.lr_d))

    def lr_scale(self, step: int) -> float:
        """The learning-rate factor of ``step`` (0-based), from the step alone so a resumed run sets the same
        rate: ContraD's linear warm-up ``min(1, (step + 1) / warmup_steps)`` times SNGAN's linear decay
        (``LinearShift`` of Adam's alpha to 0 in sngan_projection), ``(steps - step) / (steps - start)``
        from ``start = lr_decay_start * steps``, so the last step runs at 1 / (steps - start) of the rate."""
        scale = 1.0
        if self.warmup_steps > 0:
            scale = min(1.0, (step + 1) / self.warmup_steps)
        if self.decay_from is not None and step >= self.decay_from:
            scale *= (self.steps - step) / (self.steps - self.decay_from)
        return scale

    def warm_up(self, step: int) -> None:
        """Set both optimisers' learning rates for ``step`` (``lr_scale``); nothing when no schedule is on."""
        if self.warmup_steps <= 0 and self.decay_from is None:
            return
        scale = self.lr_scale(step)
        for optimizer, lr in self.base_lr:
            for group in optimizer.param_groups:
                group["lr"] = lr * scale

    @staticmethod
    def _optimise(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def d_step(self, real: torch.Tensor, labels: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """One D step on a real batch against new detached fakes."""
        real = real.contiguous(memory_format=self.memory_format)
        with self.autocast():
            with torch.no_grad():
                fake, fake_labels = self.method.fakes(len(real))
            loss, logs = self.method.d_loss(real, labels, fake, fake_labels, step)
        self._optimise(self.opt_d, loss.float())
        return {"loss/d": loss.detach().float(), **logs}

    def g_step(self, batch_size: int, step: int) -> dict[str, torch.Tensor]:
        """One G step; D's weights get no gradient while G's loss runs through it."""
        with self.autocast():
            fake, fake_labels = self.method.fakes(batch_size)
            with frozen(self.method.D):
                loss, logs = self.method.g_loss(fake, fake_labels, step)
        self._optimise(self.opt_g, loss.float())
        return {"loss/g": loss.detach().float(), **logs}

    def state_dict(self) -> dict[str, Any]:
        return {"G": self.method.G.state_dict(), "D": self.method.D.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "method": self.method.extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.method.G.load_state_dict(state["G"])
        self.method.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.method.load_extra_state(state["method"])


def compile_nets(method: GANMethod) -> None:
    """``torch.compile`` G and each part of D in place (``Module.compile``: state-dict keys unchanged, so
    checkpoints stay interchangeable with eager runs). D's parts, not D: methods call its encoder and heads
    directly (ContraD's heads, Damage GAN's pruned pass over the encoder's layers)."""
    import torch._dynamo

    # G, D's encoder and its heads share one compiled code object, each module and batch shape a cache
    # entry of it: the default limit of 8 sends ContraD's heads back to eager
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    method.G.compile()
    for part in method.D.children():
        part.compile()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from trainers.fields import ConfigError
        raise ConfigError(f"device={name} but CUDA is not available here; use device=auto or device=cpu")
    return torch.device(name)


def build_evaluator(cfg: TrainConfig, data: DataBundle, device: torch.device):
    from trainers.metrics import make_evaluator

    return make_evaluator(cfg, data, device)


class _Running:
    """Running means of the logged losses, kept as tensors so the hot path does not sync often."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, logs: Mapping[str, torch.Tensor]) -> None:
        for k, v in logs.items():
            self.sums[k] = self.sums[k] + v.detach() if k in self.sums else v.detach().clone()
        self.count += 1

    def means(self) -> dict[str, float]:
        return {k: float(v) / max(1, self.count) for k, v in self.sums.items()}


class TrailingMean:
    """``eval.last_k``: each evaluation's float figures reported as their mean over the last k evaluations
    (this one included), so a trial's value is the mean of its last k evaluations; its history is
    checkpointed, so a resumed trial reports the same numbers."""

    def __init__(self, k: int):
        self.k = k
        self.history: list[dict[str, float]] = []

    def __call__(self, figures: Mapping[str, Any]) -> dict[str, Any]:
        # floats only: counts and sizes (ints) are this evaluation's
        self.history = [*self.history, {k: float(v) for k, v in figures.items() if isinstance(v, float)}][-self.k:]
        means = {name: sum(h[name] for h in self.history if name in h) / sum(name in h for h in self.history)
                 for name in self.history[-1]}
        return {**figures, **means}


FINITE_CHECK_EVERY = 20  # steps between looks at the finiteness record (each look is a host sync)


class FiniteWatch:
    """Records, on the device and without a host sync, the first step whose losses were not finite and
    those losses; the loop looks at the record every ``FINITE_CHECK_EVERY`` steps and before every
    evaluation, so a divergence is reported at the exact step it happened and nothing after it is
    reported or checkpointed."""

    def __init__(self, device: torch.device):
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.keys: list[str] | None = None
        self.values: torch.Tensor | None = None

    def add(self, step: int, logs: Mapping[str, torch.Tensor]) -> None:
        values = torch.stack([v.detach().float().reshape(()) for v in logs.values()])
        if self.keys != list(logs):  # the first step, or other names logged: settle the record so far first
            if self.keys is not None:
                self.check()
            self.keys, self.values = list(logs), torch.zeros_like(values)
        first = (self.first_bad < 0) & ~torch.isfinite(values).all()
        self.first_bad = torch.where(first, torch.full_like(self.first_bad, step), self.first_bad)
        self.values = torch.where(first, values, self.values)

    def check(self) -> None:
        step = int(self.first_bad)
        if step >= 0:
            raise DivergedError(step, dict(zip(self.keys, self.values.tolist())))


def train(cfg: TrainConfig | Mapping[str, Any], report: Report | None = None,
          should_stop: Callable[[], bool] | None = None, *, workdir: str | Path | None = None,
          resume_from: str | Path | None = None, progress: bool = False,
          evaluator: Any = "auto", on_g_step: Callable[[GANMethod], None] | None = None) -> dict[str, Any]:
    """Train one trial; returns the last reported metrics.

    ``workdir`` holds checkpoints (a temporary directory if None); ``resume_from`` is a checkpoint
    directory or a work dir whose newest readable checkpoint is loaded. ``evaluator`` defaults to
    the metrics package's; pass None to report losses and timings only. ``on_g_step(method)`` is called
    after every G step (a measurement's own EMA copies: ``benchmarks/variance_reduction.py``).
    """
    cfg = make_config(cfg)
    report = report or (lambda metrics, checkpoint_dir: None)
    # every config error (method, device, dataset files) surfaces before anything is written
    method_cls = get_method(cfg.method)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    data = load_data(cfg)
    method = method_cls(cfg, data, device)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="trainer-")
        workdir = tmp.name
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if evaluator == "auto":
        evaluator = build_evaluator(cfg, data, device)
    # copied before the Stepper compiles G or changes its memory format: the copy is a plain module
    ema = GEma(method.G, cfg.g_ema, cfg.g_ema_start) if cfg.g_ema > 0 else None
    trailing = TrailingMean(cfg.eval.last_k)
    stepper = Stepper(method, cfg)
    sampler = BatchSampler(data.train.labels, cfg.batch_size, cfg.seed, data.num_classes,
                           class_balanced=cfg.class_balanced_sampling)
    train_images = data.train.images.to(device)
    train_labels = data.train.labels.to(device)

    step = 0
    if resume_from is not None:
        state, _ = ckpt.load_latest(resume_from)
        stepper.load_state_dict(state)
        if ema is not None:
            if "G_ema" not in state:
                from trainers.config import ConfigError
                raise ConfigError(f"g_ema={cfg.g_ema} but the checkpoint under {resume_from} has no EMA copy of G "
                                  f"(it was trained with g_ema=0); resume with g_ema=0 or start afresh")
            ema.load_state_dict(state["G_ema"])
        sampler.load_state_dict(state["sampler"])
        trailing.history = list(state.get("eval_history", []))
        ckpt.set_rng_state(state["rng"])
        step = int(state["step"])

    config_dict = to_dict(cfg)
    data_info = data.info()
    if progress:  # who the minority is, before the first number about it
        print(f"data: {data.name}, {len(data.train)} training images, counts {data.train_counts}, "
              f"minority classes {data.minority}", file=sys.stderr)
    last: dict[str, Any] = {}
    running = _Running()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.steps, initial=step, file=sys.stderr, desc=f"{cfg.method}/{cfg.dataset}",
                   unit="step", dynamic_ncols=True)
    started = time.perf_counter()
    try:
        inject_fault = faults.injector(cfg, workdir)  # the fault suite's hook; None in a real study
        watch = FiniteWatch(device)
        while step < cfg.steps:
            stepper.warm_up(step)
            method.before_step(step)
            logs: dict[str, torch.Tensor] = {}
            for _ in range(method.n_dis):
                idx = sampler.next().to(device)
                logs.update(stepper.d_step(to_float(train_images[idx]), train_labels[idx], step))
            logs.update(stepper.g_step(cfg.batch_size, step))
            if ema is not None:
                ema.update(method.G)
            if on_g_step is not None:
                on_g_step(method)
            if inject_fault is not None:
                inject_fault(step, logs)
            watch.add(step, logs)
            running.add(logs)
            step += 1
            if step % FINITE_CHECK_EVERY == 0:
                watch.check()
            if bar is not None:
                bar.update(1)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                watch.check()
                train_time = time.perf_counter() - started
                metrics: dict[str, Any] = {"step": step, "epoch": sampler.epoch, **running.means(),
                                           "time/step_s": train_time / max(1, running.count)}
                metrics.update(method.diagnostics())
                t0 = time.perf_counter()
                artifacts = None
                if evaluator is not None:
                    artifacts = workdir / f".artifacts-{step}"
                    with ema.in_place_of(method) if ema is not None else contextlib.nullcontext():
                        metrics.update(trailing(evaluator.evaluate(method, step, artifacts)))
                metrics["time/eval_s"] = time.perf_counter() - t0
                state = {**stepper.state_dict(), "sampler": sampler.state_dict(), "rng": ckpt.rng_state(),
                         "step": step}
                if ema is not None:
                    state["G_ema"] = ema.state_dict()
                if cfg.eval.last_k > 1:
                    state["eval_history"] = trailing.history
                path = ckpt.save_checkpoint(workdir, step, state, metrics, config_dict, artifacts,
                                            keep=cfg.keep_checkpoints, data=data_info)
                if bar is not None:
                    bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items()
                                     if k in ("loss/d", "loss/g", "fid", "fid_minority")})
                report(metrics, str(path))
                last = metrics
                running = _Running()
                started = time.perf_counter()
                if should_stop is not None and should_stop():
                    break
    finally:
        if bar is not None:
            bar.close()
        if tmp is not None:
            tmp.cleanup()
    return last
