"""One evaluation: sample G, extract features once, then every metric from slices of that one pass.

* Sampling: ``eval.num_samples`` images in batches of ``eval.batch_size``, G in eval mode, noise from a
  local ``torch.Generator`` seeded by ``cfg.seed`` (the same noise at every evaluation; the global RNG
  is never touched, so training and resume stay bit-exact). Unconditional models: G's own class
  mix, each image labelled by the judge. Conditional models: ``num_samples`` split evenly over the
  classes (the remainder to the first classes), labels passed to ``generate``.
* Features: one pass of the FID feature extractor (the judge's 32-d bottleneck, or Inception's
  2048-d pool) per batch, plus the judge's logits (the same pass when features=judge). Memory is
  bounded by the batch: only features and a few images for the grid are kept.
* Metrics: torch-fidelity's FID/KID (and IS with Inception) against the balanced test split; the
  per-class FID slices the same features by class — the judge's label (unconditional) or the
  requested label (conditional) — against that class's test statistics; the class histogram and
  its KLs are over the judge's labels for every model (for a conditional model the requested labels
  are uniform by construction; what G actually drew is what the judge sees).

Reported keys: ``fid``, ``kid``, ``is`` (Inception only), ``fid_minority``, ``fid_majority``,
``fid_class/<k>``, ``count_class/<k>`` (samples behind ``fid_class/<k>``), ``judged_class/<k>``
(samples the judge labelled ``k``: the generated histogram), ``prior/<k>`` (training prior),
``class_kl_uniform``, ``class_kl_prior``, ``classes_dropped``, ``judge/confidence`` (mean max
softmax), ``judge/test_accuracy`` and, for conditional models, ``judge/conditional_accuracy``
(fraction of samples the judge assigns to the requested class). Conventions: see ``perclass``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from trainers.config import TrainConfig
from trainers.data import DataBundle, to_uint8
from trainers.metrics import fidelity, perclass
from trainers.metrics.cache import digest, load_or_compute
from trainers.metrics.fidelity import JUDGE_NAME, register_judge
from trainers.metrics.judge import load_or_train_judge

EVAL_SEED_OFFSET = 1_000_003  # evaluation noise differs from the training stream of the same seed
GRID_PER_ROW = 12


class Evaluator:
    def __init__(self, cfg: TrainConfig, data: DataBundle, device: torch.device):
        self.cfg = cfg
        self.ecfg = cfg.eval
        self.data = data
        self.device = torch.device(device)
        self.cache_dir = Path(cfg.cache_dir)
        # Inception first: a missing weights file is refused before anything is trained or written
        inception = (fidelity.create_inception(self.device, self.ecfg.inception_weights)
                     if self.ecfg.features == "inception" else None)
        self.judge_path, payload, self.judge_trained = load_or_train_judge(
            data, self.cache_dir, self.ecfg.judge_width, self.ecfg.judge_epochs, self.device)
        self.judge_accuracy = float(payload["test_accuracy"])
        self.judge_train_seconds = float(payload["train_seconds"])
        register_judge()
        self.judge = fidelity.create_extractor(JUDGE_NAME, ("feat", "logits"), self.device, str(self.judge_path))
        self.features = inception if inception is not None else self.judge
        self.prior = [float(p) for p in perclass.training_prior(data.train_counts)]
        ref = self._reference()
        self.ref_features = ref["features"].to(torch.float64)
        self.ref_labels = ref["labels"]
        self.ref_stats = {"mu": ref["mu"].numpy(), "sigma": ref["sigma"].numpy()}
        self.ref_class_stats = {k: {"mu": ref["class_mu"][k].numpy(), "sigma": ref["class_sigma"][k].numpy()}
                                for k in range(data.num_classes) if int(ref["class_count"][k]) >= 2}

    # -- reference statistics of the balanced test split (cached like the judge) -----------------
    def _reference(self) -> dict:
        if self.features is self.judge:
            extractor_id = ("judge", self.judge_path.name)
        else:
            weights = self.ecfg.inception_weights
            stat = os.stat(weights) if weights else None
            extractor_id = (fidelity.INCEPTION_NAME, weights, stat and (stat.st_size, stat.st_mtime_ns))
        key = digest("reference", 1, extractor_id, self.data.num_classes, self.data.test.images, self.data.test.labels)
        path = self.cache_dir / f"reference-{key}.pt"

        def compute() -> dict:
            feats = fidelity.extract(self.features, self.data.test.images, self.ecfg.batch_size, self.device)[0]
            labels = self.data.test.labels
            stats = fidelity.statistics(feats)
            dim, k = feats.shape[1], self.data.num_classes
            class_mu = torch.full((k, dim), math.nan, dtype=torch.float64)
            class_sigma = torch.full((k, dim, dim), math.nan, dtype=torch.float64)
            counts = torch.bincount(labels, minlength=k)
            for c in range(k):
                if counts[c] >= 2:
                    s = fidelity.statistics(feats[labels == c])
                    class_mu[c], class_sigma[c] = torch.from_numpy(s["mu"]), torch.from_numpy(s["sigma"])
            # extractors compute in float32, so storing the features as float32 loses nothing
            return {"features": feats.float(), "labels": labels.clone(), "mu": torch.from_numpy(stats["mu"]),
                    "sigma": torch.from_numpy(stats["sigma"]), "class_mu": class_mu, "class_sigma": class_sigma,
                    "class_count": counts}

        return load_or_compute(path, compute)[0]

    # -- features ----------------------------------------------------------------------------------
    def features_of(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(FID/KID features, judge logits, Inception logits or None) of uint8 images, batched."""
        bs = self.ecfg.batch_size
        if self.features is self.judge:
            feats, judge_logits = fidelity.extract(self.judge, images, bs, self.device)
            return feats, judge_logits, None
        feats, is_logits = fidelity.extract(self.features, images, bs, self.device)
        judge_logits = fidelity.extract(self.judge, images, bs, self.device)[1]
        return feats, judge_logits, is_logits

    # -- sampling ----------------------------------------------------------------------------------
    def requested_labels(self, method) -> torch.Tensor | None:
        if not getattr(method, "conditional", False):
            return None
        n, k = self.ecfg.num_samples, self.data.num_classes
        labels = torch.arange(k).repeat_interleave(n // k)
        return torch.cat([labels, torch.arange(n - len(labels))])

    @torch.no_grad()
    def sample_batches(self, method) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """uint8 batches of ``eval.batch_size`` samples (and their requested labels, if conditional)."""
        n, bs = self.ecfg.num_samples, self.ecfg.batch_size
        gen = torch.Generator().manual_seed(int(self.cfg.seed) + EVAL_SEED_OFFSET)
        labels = self.requested_labels(method)
        G = getattr(method, "G", None)
        was_training = G.training if G is not None else False
        if G is not None:
            G.eval()
        try:
            for start in range(0, n, bs):
                count = min(bs, n - start)
                y = labels[start:start + count] if labels is not None else None
                yield to_uint8(method.generate(count, labels=y, generator=gen).detach().cpu()), y
        finally:
            if G is not None:
                G.train(was_training)

    # -- metrics -----------------------------------------------------------------------------------
    def metrics_from(self, feats: torch.Tensor, judge_logits: torch.Tensor, is_logits: torch.Tensor | None = None,
                     labels: torch.Tensor | None = None, with_kid: bool = True) -> tuple[dict[str, float], np.ndarray]:
        """Every metric from one pass of features; ``labels`` given = conditional model."""
        with fidelity.blas_threads_for(feats.shape[1]):
            return self._metrics_from(feats, judge_logits, is_logits, labels, with_kid)

    def _metrics_from(self, feats, judge_logits, is_logits, labels, with_kid):
        k = self.data.num_classes
        logits = judge_logits.numpy()
        judged = logits.argmax(1) if len(logits) else np.zeros(0, dtype=np.int64)
        # max softmax = 1 / sum_j exp(l_j - l_max)
        confidence = 1.0 / np.exp(logits - logits.max(1, keepdims=True)).sum(1) if len(logits) else None
        out: dict[str, float] = {"fid": fidelity.fid_of_features(feats, self.ref_stats)}
        if with_kid:
            out["kid"] = fidelity.kid(feats, self.ref_features, self.ecfg.kid_subset_size)
        if is_logits is not None:
            out["is"] = fidelity.inception_score(is_logits)
        classes = labels.numpy() if labels is not None else judged
        per_class = perclass.per_class_fid(feats, classes, self.ref_class_stats, k, self.ecfg.min_class_samples)
        out.update(per_class)
        out.update(perclass.group_means(per_class, self.data.minority, self.data.majority))
        out.update(perclass.class_diagnostics(judged, k, self.data.train_counts))
        judged_counts = np.bincount(judged, minlength=k)
        for c in range(k):
            out[f"judged_class/{c}"] = int(judged_counts[c])
            out[f"prior/{c}"] = self.prior[c]
        out["judge/confidence"] = float(confidence.mean()) if confidence is not None else math.nan
        out["judge/test_accuracy"] = self.judge_accuracy
        if labels is not None:
            out["judge/conditional_accuracy"] = float(np.mean(judged == labels.numpy())) if len(judged) else math.nan
        return out, judged

    def metrics_for(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                    with_kid: bool = True) -> tuple[dict[str, float], np.ndarray]:
        """Every metric of a set of uint8 images (one feature pass)."""
        return self.metrics_from(*self.features_of(images), labels=labels, with_kid=with_kid)

    def evaluate(self, method, step: int, out_dir: str | Path | None = None) -> dict[str, Any]:
        k = self.data.num_classes
        feats, judge_logits, is_logits, labels = [], [], [], []
        grid: list[list[torch.Tensor]] = [[] for _ in range(k)]
        for images, y in self.sample_batches(method):
            f, jl, il = self.features_of(images)
            feats.append(f)
            judge_logits.append(jl)
            if il is not None:
                is_logits.append(il)
            if y is not None:
                labels.append(y)
            for c, img in zip(jl.argmax(1).tolist(), images):
                if len(grid[c]) < GRID_PER_ROW:
                    grid[c].append(img.clone())  # not a view pinning the whole batch
        metrics, judged = self.metrics_from(torch.cat(feats), torch.cat(judge_logits),
                                            torch.cat(is_logits) if is_logits else None,
                                            torch.cat(labels) if labels else None)
        if out_dir is not None and self.ecfg.images:
            from trainers.metrics.plots import class_histogram, sample_grid

            out_dir = Path(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            sample_grid(grid, (self.data.channels, self.data.resolution, self.data.resolution),
                        out_dir / f"samples_step{step}.png")
            class_histogram(judged, self.data.train_counts, out_dir / f"class_hist_step{step}.png", step,
                            class_names=self.data.class_names)
        return metrics
