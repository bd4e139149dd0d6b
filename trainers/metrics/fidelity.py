"""torch-fidelity wiring: feature extractors, batched feature extraction, FID/KID/IS from features.

The metric arithmetic is torch-fidelity's own (``fid_features_to_statistics``,
``fid_statistics_to_metric``, ``kid_features_to_metric``, ``prc_features_to_metric``,
``isc_features_to_metric``); this module only
extracts features once, in bounded batches, so that the overall and the per-class metrics are slices
of the same pass. ``UInt8Dataset`` feeds the same images to ``torch_fidelity.calculate_metrics``.
torch-fidelity (which imports torchvision: ~2 s) is imported where it is first used, so the metric
names (``trainers.metrics.names``) are known to a process that never evaluates.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys

import numpy as np
import torch
from torch.utils.data import Dataset

from trainers.fields import ConfigError, one_line

JUDGE_NAME = "ltgan-judge"  # the judge as a torch-fidelity feature extractor
INCEPTION_NAME = "inception-v3-compat"
INCEPTION_FEATURES = ("2048", "logits_unbiased")  # torch-fidelity's defaults for FID/KID and for IS
KID_SUBSETS = 100  # torch-fidelity's default
KID_SEED = 2020  # torch-fidelity's default rng_seed


class UInt8Dataset(Dataset):
    """uint8 N x C x H x W images as torch-fidelity wants them: 3 x H x W, grey repeated."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = self.images[i]
        return x.repeat(3, 1, 1) if x.shape[0] == 1 else x


def register_judge() -> None:
    """Make ``ltgan-judge`` known to torch-fidelity (idempotent)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    from trainers.metrics.judge_extractor import JudgeFeatureExtractor

    if JUDGE_NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(JUDGE_NAME, JudgeFeatureExtractor)


def create_extractor(name: str, features: list[str] | tuple[str, ...], device: torch.device,
                     weights: str | None = None):
    from torch_fidelity.utils import create_feature_extractor

    # building the modules draws initial weights from the global RNG before the real ones are
    # loaded: fork it, so that building an evaluator leaves the trainer's random stream as it was
    with torch.random.fork_rng(devices=[]):
        extractor = create_feature_extractor(name, list(features), cuda=False, verbose=False,
                                             feature_extractor_weights_path=weights)
    return extractor.to(device)


def create_inception(device: torch.device, weights: str | None):
    """torch-fidelity's inception-v3-compat from ``weights`` (a local file) or its download URL; a
    ConfigError naming the fix when neither can be had (offline, missing file)."""
    chatter = io.StringIO()  # torch.hub's "Downloading: ..." line: shown on success, not before our error
    try:
        with contextlib.redirect_stderr(chatter):
            extractor = create_extractor(INCEPTION_NAME, INCEPTION_FEATURES, device, weights)
        sys.stderr.write(chatter.getvalue())
        return extractor
    except Exception as e:  # noqa: BLE001 - any failure here means: no usable weights
        where = f"from eval.inception_weights={weights}" if weights else "by download (offline?)"
        reason = one_line(e)[:160]
        raise ConfigError(f"eval.features=inception: the {INCEPTION_NAME} weights cannot be loaded {where} "
                          f"({type(e).__name__}: {reason}); set eval.inception_weights=/path/to/"
                          f"weights-inception-2015-12-05-6726825d.pth or use eval.features=judge") from None


def to_three_channels(images: torch.Tensor) -> torch.Tensor:
    return images.repeat(1, 3, 1, 1) if images.shape[1] == 1 else images


@torch.no_grad()
def extract(extractor, images_uint8: torch.Tensor, batch_size: int, device: torch.device) -> list[torch.Tensor]:
    """Every requested feature of ``extractor`` for uint8 images, in batches (float64, CPU)."""
    outs: list[list[torch.Tensor]] = []
    for start in range(0, len(images_uint8), batch_size):
        x = to_three_channels(images_uint8[start:start + batch_size]).to(device)
        feats = extractor(x)
        if not outs:
            outs = [[] for _ in feats]
        for acc, f in zip(outs, feats):
            acc.append(f.detach().to("cpu", torch.float64))
    return [torch.cat(acc) for acc in outs]


_BLAS_CONTROLLER = None
SMALL_FEATURE_DIM = 256


@contextlib.contextmanager
def one_thread():
    """One torch intra-op thread and one BLAS thread, both restored afterwards.

    For the judge's forward passes and the arithmetic of small features (the judge's 32-d space):
    work this small does not scale across threads, and a multi-threaded pool pays a wake-up per call
    that costs more than the call; when parallel trials or other jobs share the cores it spin-waits
    (the judge's pass over 1,360 digits images took 1.09 s on two threads of a loaded 2-core
    machine, 0.015 s on one). threadpoolctl comes with scikit-learn; without it BLAS is left alone.
    """
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - scikit-learn depends on it
            _BLAS_CONTROLLER = False
        else:
            _BLAS_CONTROLLER = ThreadpoolController()  # scanning the loaded libraries is slow: once
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _BLAS_CONTROLLER.limit(limits=1, user_api="blas") if _BLAS_CONTROLLER else contextlib.nullcontext():
            yield
    finally:
        torch.set_num_threads(threads)


def threads_for(dim: int):
    """``one_thread()`` for the arithmetic of small features; Inception's 2048-d matrices keep the
    threads."""
    return one_thread() if dim <= SMALL_FEATURE_DIM else contextlib.nullcontext()


def statistics(features: torch.Tensor) -> dict[str, np.ndarray]:
    """torch-fidelity's FID statistics (mean, unbiased covariance) in float64."""
    from torch_fidelity.metric_fid import fid_features_to_statistics

    return fid_features_to_statistics(features.to(torch.float64))


def fid(stats_1: dict, stats_2: dict) -> float:
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    return float(fid_statistics_to_metric(stats_1, stats_2, verbose=False)[KEY_METRIC_FID])


def fid_between(features: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray,
                reference_stats: dict | None = None) -> float:
    """FID of two feature sets (``reference_stats``: the reference's statistics, if already computed).

    When both sets have more samples than dimensions (the judge's 32-d space), this is torch-fidelity's
    arithmetic. When either has at most as many samples as dimensions (a class's N <= 100 samples in
    Inception's 2048-d space), its covariance is singular: scipy's ``sqrtm`` of the 2048 x 2048 product
    then takes 15-30 s on one CPU core and is least accurate exactly there. The same quantity is then
    computed exactly in the samples' own span: with ``S1 = A^T A`` and ``S2 = B^T B`` (``A``, ``B``: the
    centred features / sqrt(n - 1), one row a sample), ``Tr sqrt(S1 S2)`` is the sum of the singular
    values of ``A B^T``.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)
    if min(len(x), len(y)) < 2:
        return math.nan
    if min(len(x), len(y)) > x.shape[1]:
        return fid(statistics(torch.from_numpy(x)), reference_stats or statistics(torch.from_numpy(y)))
    a = (x - x.mean(0)) / math.sqrt(len(x) - 1)
    b = (y - y.mean(0)) / math.sqrt(len(y) - 1)
    # rows are samples: S1 = a^T a, S2 = b^T b, and the non-zero eigenvalues of S1 S2 are the squared
    # singular values of a b^T (n1 x n2)
    trace_sqrt = float(np.linalg.svd(a @ b.T, compute_uv=False).sum())
    diff = x.mean(0) - y.mean(0)
    return float(diff @ diff + np.sum(a * a) + np.sum(b * b) - 2.0 * trace_sqrt)


def kid(features_1: torch.Tensor, features_2: torch.Tensor, subset_size: int) -> float:
    """torch-fidelity's KID with its subset size capped to the smaller set (NaN below two samples:
    the unbiased MMD estimator needs pairs).

    When the subset is both whole sets (per-class KID at equal N), every one of torch-fidelity's
    subsets is a permutation of the same two sets and the unbiased MMD^2 does not depend on the
    order, so one subset gives its mean exactly (up to summation order) at 1/100 of the cost.
    """
    size = min(subset_size, len(features_1), len(features_2))
    if size < 2:
        return math.nan
    subsets = 1 if size == len(features_1) == len(features_2) else KID_SUBSETS
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, kid_features_to_metric

    out = kid_features_to_metric(torch.as_tensor(features_1), torch.as_tensor(features_2), kid_subsets=subsets,
                                 kid_subset_size=size, verbose=False, rng_seed=KID_SEED)
    return float(out[KEY_METRIC_KID_MEAN])


def precision_recall(generated: torch.Tensor, real: torch.Tensor, neighborhood: int) -> tuple[float, float]:
    """torch-fidelity's k-NN precision and recall (Kynkaanniemi et al. 2019) of generated features
    against real ones; NaN when either set is too small for a k-th neighbour."""
    if min(len(generated), len(real)) <= neighborhood:
        return math.nan, math.nan
    from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

    out = prc_features_to_metric(torch.as_tensor(generated), torch.as_tensor(real), prc_neighborhood=neighborhood,
                                 prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    return float(out[KEY_METRIC_PRECISION]), float(out[KEY_METRIC_RECALL])


def inception_score(logits: torch.Tensor, splits: int = 10) -> float:
    if len(logits) < 2:
        return math.nan
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, isc_features_to_metric

    return float(isc_features_to_metric(logits, splits=min(splits, len(logits)))[KEY_METRIC_ISC_MEAN])
