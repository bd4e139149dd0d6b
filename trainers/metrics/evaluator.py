"""One evaluation: sample, extract features once, then overall and per-class metrics from slices.

FID, KID and IS are torch-fidelity's own computations (``fid_statistics_to_metric``,
``kid_features_to_metric``, ``isc_features_to_metric``) applied to features extracted once; the
per-class FID slices the same features by class (judge label, or the sampled label for a conditional
model). A class with fewer samples than ``eval.min_class_samples`` reports NaN plus its count.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from trainers.config import ConfigError, TrainConfig
from trainers.data import DataBundle, to_uint8
from trainers.metrics.judge import JUDGE_NAME, load_or_train_judge, register_judge

INCEPTION_NAME = "inception-v3-compat"
EVAL_SEED_OFFSET = 1_000_003


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats; terms with p = 0 contribute 0 (q > 0 wherever p > 0 here)."""
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def fid_from_stats(stats_a: dict, stats_b: dict) -> float:
    return float(fid_statistics_to_metric(stats_a, stats_b, verbose=False)["frechet_inception_distance"])


def class_diagnostics(labels: np.ndarray, num_classes: int, train_counts: list[int]) -> dict[str, float]:
    """Histogram of generated classes vs uniform and vs the training prior; dropped classes."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    p = counts / max(1.0, counts.sum())
    prior = np.asarray(train_counts, dtype=np.float64)
    prior = prior / prior.sum()
    uniform = np.full(num_classes, 1.0 / num_classes)
    return {
        "class_kl_uniform": kl_divergence(p, uniform),
        "class_kl_prior": kl_divergence(p, prior),
        "classes_dropped": int(np.sum(p < 1.0 / (4 * num_classes))),
    }


class Evaluator:
    def __init__(self, cfg: TrainConfig, data: DataBundle, device: torch.device):
        self.cfg = cfg
        self.ecfg = cfg.eval
        self.data = data
        self.device = device
        self.cache_dir = Path(cfg.root) / "cache"
        self.judge_path, self.judge_accuracy, _ = load_or_train_judge(
            data, self.cache_dir, self.ecfg.judge_width, self.ecfg.judge_epochs, device)
        register_judge()
        self.judge = self._extractor(JUDGE_NAME, ["feat", "logits"], str(self.judge_path))
        if self.ecfg.features == "inception":
            self.features = self._inception()
        else:
            self.features = self.judge
        self.ref_feats, self.ref_labels = self._reference()
        self.ref_stats = fid_features_to_statistics(self.ref_feats)
        self.ref_class_stats = {}
        for k in range(data.num_classes):
            sel = self.ref_feats[self.ref_labels == k]
            if len(sel) >= 2:
                self.ref_class_stats[k] = fid_features_to_statistics(sel)

    # -- feature extractors ---------------------------------------------------------------------
    def _extractor(self, name: str, features: list[str], weights: str | None):
        from torch_fidelity.utils import create_feature_extractor

        return create_feature_extractor(name, features, cuda=self.device.type == "cuda",
                                        feature_extractor_weights_path=weights, verbose=False)

    def _inception(self):
        try:
            return self._extractor(INCEPTION_NAME, ["2048", "logits_unbiased"], self.ecfg.inception_weights)
        except Exception as e:  # no weights file and no network: tell the person what to do
            raise ConfigError(f"eval.features=inception: the {INCEPTION_NAME} weights cannot be had "
                              f"({type(e).__name__}: {str(e)[:120]}); pass eval.inception_weights=/path/to/weights.pth "
                              f"or use eval.features=judge") from None

    @torch.no_grad()
    def extract(self, extractor, images_uint8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) of uint8 images, in batches of eval.batch_size (bounded memory)."""
        feats, logits = [], []
        for start in range(0, len(images_uint8), self.ecfg.batch_size):
            x = images_uint8[start:start + self.ecfg.batch_size]
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            f, l = extractor(x.to(self.device))
            feats.append(f.double().cpu())
            logits.append(l.double().cpu())
        return torch.cat(feats), torch.cat(logits)

    def _reference(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of the balanced test split, cached under <root>/cache like the judge."""
        from filelock import FileLock

        h = hashlib.sha256()
        h.update(f"{self.ecfg.features}|{self.judge_path.name}|{self.ecfg.inception_weights}".encode())
        h.update(self.data.test.images.numpy().tobytes())
        path = self.cache_dir / f"reference-{self.data.name}-{h.hexdigest()[:20]}.pt"
        with FileLock(str(path) + ".lock"):
            if not path.exists():
                feats, _ = self.extract(self.features, self.data.test.images)
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                torch.save({"features": feats, "labels": self.data.test.labels.clone()}, tmp)
                os.replace(tmp, path)
            ref = torch.load(path, map_location="cpu", weights_only=True)
        return ref["features"], ref["labels"]

    # -- one evaluation -------------------------------------------------------------------------
    def sample(self, method) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 samples from G with a local generator (the training RNG is untouched)."""
        n = self.ecfg.num_samples
        k = self.data.num_classes
        gen = torch.Generator().manual_seed(self.cfg.seed + EVAL_SEED_OFFSET)
        labels = None
        if method.conditional:
            labels = torch.arange(k).repeat_interleave(n // k)
            labels = torch.cat([labels, torch.arange(n - len(labels))])
        out = []
        for start in range(0, n, self.ecfg.batch_size):
            count = min(self.ecfg.batch_size, n - start)
            y = labels[start:start + count] if labels is not None else None
            out.append(to_uint8(method.generate(count, labels=y, generator=gen).cpu()))
        return torch.cat(out), labels

    def metrics_for(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                    with_kid: bool = True) -> tuple[dict[str, float], np.ndarray]:
        """Every metric of a set of uint8 images; ``labels`` given = conditional, else judged."""
        feats, logits = self.extract(self.features, images)
        if self.features is self.judge:
            judge_logits = logits
        else:
            _, judge_logits = self.extract(self.judge, images)
        probs = torch.softmax(judge_logits, dim=1)
        judged = probs.argmax(1).numpy()
        classes = labels.numpy() if labels is not None else judged
        k = self.data.num_classes
        out: dict[str, float] = {"judge/test_accuracy": self.judge_accuracy,
                                 "judge/confidence": float(probs.max(1).values.mean())}
        out["fid"] = fid_from_stats(fid_features_to_statistics(feats), self.ref_stats)
        subset = min(self.ecfg.kid_subset_size, len(feats), len(self.ref_feats))
        if not with_kid:
            pass
        elif subset >= 2:
            kid = kid_features_to_metric(feats.float(), self.ref_feats.float(), kid_subsets=50,
                                         kid_subset_size=subset, kid_degree=3, kid_gamma=None, kid_coef0=1,
                                         kid_kernel="poly", verbose=False, rng_seed=2020)
            out["kid"] = kid["kernel_inception_distance_mean"]
        else:
            out["kid"] = math.nan
        if self.features is not self.judge:
            out["is"] = isc_features_to_metric(logits.float(), splits=min(10, len(logits)))["inception_score_mean"]
        per_class = {}
        for c in range(k):
            sel = classes == c
            count = int(sel.sum())
            out[f"count_class/{c}"] = count
            if count >= max(2, self.ecfg.min_class_samples) and c in self.ref_class_stats:
                per_class[c] = fid_from_stats(fid_features_to_statistics(feats[torch.from_numpy(sel)]),
                                              self.ref_class_stats[c])
            else:
                per_class[c] = math.nan
            out[f"fid_class/{c}"] = per_class[c]
        for name, members in (("fid_minority", self.data.minority), ("fid_majority", self.data.majority)):
            finite = [per_class[c] for c in members if math.isfinite(per_class[c])]
            out[name] = float(np.mean(finite)) if finite else math.nan
        # the histogram is of what G produced: judged labels, also for conditional models
        out.update(class_diagnostics(judged, k, self.data.train_counts))
        prior = np.asarray(self.data.train_counts, dtype=np.float64)
        for c in range(k):
            out[f"prior/{c}"] = float(prior[c] / prior.sum())
        return out, judged

    def evaluate(self, method, step: int, out_dir: str | Path | None = None) -> dict[str, Any]:
        images, labels = self.sample(method)
        metrics, judged = self.metrics_for(images, labels)
        if out_dir is not None and self.ecfg.images:
            from trainers.metrics.plots import class_histogram, sample_grid

            out_dir = Path(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            sample_grid(images, judged, self.data.num_classes, out_dir / f"samples_step{step}.png")
            class_histogram(judged, self.data.train_counts, out_dir / f"class_hist_step{step}.png", step)
        return metrics
