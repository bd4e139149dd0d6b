"""The trainer's shared knobs, read top to bottom: every field with its default, one doc line and its checks.

Each field is a ``setting`` (``trainers.fields``: its range, positivity or choices sit beside it and are
applied when a config is built). Each method declares its own knobs beside its code
(``trainers/methods/<name>.py``, a frozen dataclass of ``setting`` fields), the fault suite its keys in
``trainers.faults``; ``trainers.config`` puts them together into one trial's config. Names that come
from a registry (methods, datasets, imbalance profiles) are checked against that registry there,
never listed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainers.paths import CACHE_FOLDER, DEFAULT_DATA_ROOT, DEFAULT_ROOT
from trainers.faults import FaultConfig
from trainers.fields import INF, setting


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation (``eval.*`` keys)."""

    features: str = setting("judge", "judge (offline, CPU) or inception (torch-fidelity inception-v3-compat)",
                            choices=("judge", "inception"))
    inception_weights: str | None = setting(None, "local path to the inception-v3-compat weights file")
    num_samples: int = setting(1000, "the overall set: fid, kid and the class histogram on exactly this many samples",
                               positive=True)
    batch_size: int = setting(250, "sampling and feature-extraction batch: bounds evaluation memory", positive=True)
    per_class_n: int | None = setting(None, "every class is scored on this many samples; None = min(100, the "
                                            "smallest class's reference pool: its test images, half of them "
                                            "under split=val_test)", positive=True)
    split: str = setting("test", "test: every figure against the test images; val_test: each class's test images "
                                 "halved, val/<metric> against one half (what a searching study selects on), the "
                                 "normal names against the other", choices=("test", "val_test"))
    last_k: int = setting(1, "every float figure an evaluation reports is the mean of it and the previous last_k - 1 "
                             "evaluations' (1 = this evaluation alone; benchmarks/variance_reduction.py)",
                          positive=True)
    reference_draws: int = setting(5, "reference draws each figure is scored against (subsamples of a class's "
                                      "pool, bootstrap resamples where N is the whole pool); evalsd/<metric> is "
                                      "their sd", positive=True)
    max_draws: int | None = setting(None, "cap on the images drawn to fill per_class_n; None = 2 * per_class_n / "
                                          "(the tail's training prior)", positive=True)
    kid_subset_size: int = setting(100, "capped to the number of samples when fewer", positive=True)
    judge_epochs: int = setting(15, "training epochs of the judge classifier (trained once, cached)", positive=True)
    judge_width: int = setting(32, "channel width of the judge classifier", positive=True)
    images: bool = setting(True, "write a sample grid and a class histogram per evaluation")
    save_samples: bool = setting(True, "write samples.npz (what was scored) per evaluation, for rescoring")


@dataclass(frozen=True)
class NoKnobs:
    """A method without knobs of its own (the DCGAN baseline)."""


@dataclass(frozen=True)
class TrainConfig:
    """One trial: the settings every method shares, plus ``knobs``, the method's own (see its file).

    Defaults are a CPU-sized preset; a search space overrides any of them."""

    # --- method and data ---
    method: str = setting("dcgan", "a name of trainers.methods.METHODS")
    dataset: str = setting("mnist", "a name of trainers.data.DATASETS (mnist: the embedded default)")
    data_root: str = setting(DEFAULT_DATA_ROOT, "where torchvision datasets live (the embedded ones need none)")
    download: bool = setting(False, "let torchvision download a missing dataset")
    resolution: int | None = setting(None, "image side; None = the dataset's default", positive=True)
    imbalance: float = setting(1.0, "rho = n_max / n_min of the training split; 1 = balanced", between=(1.0, INF, "[]"))
    imbalance_profile: str = setting("exp", "a name of trainers.imbalance.PROFILES")
    n_max: int | None = setting(None, "images of the head class; None = the smallest class's count", positive=True)
    data_seed: int | None = setting(None, "which images of a class are kept; None = the trial's seed, so "
                                          "replicates see different subsets and one seed's trials share one")
    class_order: str = setting("per_seed", "per_seed: the classes ranked by a permutation seeded by class_order_seed "
                                           "(None = the trial's seed), so the minority classes vary between seeds; "
                                           "natural: class 0 is the head, the last classes the tail",
                               choices=("per_seed", "natural"))
    class_order_seed: int | None = setting(None, "seeds the per_seed class order; None = the trial's seed")
    num_minority: int | None = setting(None, "minority classes; None = floor(K / 2) smallest")
    class_balanced_sampling: bool = setting(False, "draw real batches class-uniformly (any method)")

    # --- optimisation (the loop owns the optimisers and their steps) ---
    steps: int = setting(2000, "generator steps", positive=True)
    batch_size: int = setting(64, "real and fake images per D step, fakes per G step", positive=True)
    n_dis: int | None = setting(None, "D steps per G step; None = the method's default", positive=True)
    # the CPU recipe of docs/pilot.md (every method's balanced run covers the ten digits); the papers'
    # Adam 2e-4 (0.5, 0.999) left the balanced DCGAN collapsed at CPU scale and is in the GPU presets
    lr_g: float = setting(2e-4, "Adam learning rate of G", between=(0.0, INF, "()"))
    lr_d: float = setting(4e-4, "Adam learning rate of D", between=(0.0, INF, "()"))
    beta1: float = setting(0.0, "Adam beta1 of both nets", between=(0.0, 1.0, "[)"))
    beta2: float = setting(0.9, "Adam beta2 of both nets", between=(0.0, 1.0, "[)"))
    warmup_steps: int = setting(0, "linear learning-rate warm-up of both nets over this many steps (0 = none)",
                                between=(0, INF, "[]"))
    lr_decay_start: float = setting(1.0, "linear learning-rate decay of both nets to 0, from this fraction of "
                                    "the steps to the last (SNGAN's LinearShift; 1 = none)", between=(0.0, 1.0, "[]"))
    z_dim: int = setting(128, "latent size", positive=True)
    ch: int = setting(16, "width multiplier (64 on GPU, 8-32 on CPU)", positive=True)
    seed: int = setting(0, "seeds Python, NumPy and torch; replicates differ by it")
    device: str = setting("auto", "auto | cpu | cuda | cuda:N")
    amp: str = setting("off", "bf16: forward passes under bfloat16 autocast (backward and optimiser in fp32)",
                       choices=("off", "bf16"))
    compile: bool = setting(False, "torch.compile G and D's parts (in place: checkpoints keep their keys)")
    channels_last: bool = setting(False, "nets and image batches in channels-last memory format")
    g_ema: float = setting(0.0, "decay of an EMA copy of G's weights, updated after every G step and scored instead "
                                "of G (0 = off; trainers/ema.py; training is the same either way)",
                           between=(0.0, 1.0, "[)"))
    g_ema_start: int = setting(0, "G steps the EMA copy follows G exactly before it starts averaging (BigGAN's and "
                                  "StudioGAN's ema_start)", between=(0, INF, "[]"))

    # --- evaluation, checkpoints and the paths this trial writes ---
    eval_every: int = setting(500, "evaluate, checkpoint and report every this many steps (and at the end)",
                              positive=True)
    keep_checkpoints: int = setting(2, "checkpoints kept in the work dir (the previous one survives a bad write)",
                                    positive=True)
    cache_dir: str = setting(f"{DEFAULT_ROOT}/{CACHE_FOLDER}", "judge classifier and reference statistics, shared by "
                                                               "trials")
    eval: EvalConfig = setting(factory=EvalConfig)
    fault: FaultConfig = setting(factory=FaultConfig)

    # --- the method's own knobs (a dataclass declared beside the method) ---
    knobs: Any = setting(factory=NoKnobs)
