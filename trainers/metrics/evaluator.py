"""One evaluation: sample G, extract features, then every metric from slices of those features.

* **The overall set**: exactly ``eval.num_samples`` images in batches of ``eval.batch_size``, G in eval
  mode, noise from a local ``torch.Generator`` seeded by ``cfg.seed`` (the same noise at every
  evaluation; the global RNG is never touched, so training and resume stay bit-exact).
  Unconditional models: G's own class mix, each image labelled by the judge. Conditional models:
  ``num_samples`` split evenly over the classes (the remainder to the first classes). ``fid``,
  ``kid`` (``is``), the class histogram, its KLs, ``classes_dropped`` and the judge's confidence are
  computed on this set and nothing else (``fid_n`` reports its size), so they measure G's class mix
  at a fixed N.
* **The per-class top-up**: every class is scored on ``N = eval.per_class_n`` samples (``perclass``).
  A class the overall set leaves short gets more: unconditional models keep drawing batches from the
  same noise stream, the judge labels them and the images of still-short classes are kept, until
  every class has N, or ``max_draws`` images were drawn in all, or every short class is hopeless
  (``perclass.hopeless``: 99.9% sure it cannot fill by the cap); the short classes are then
  *missing*. Conditional models ask G for the missing count of each class directly.
* **What is scored is what is saved**: the overall set followed by the kept top-up images, in draw
  order, as ``samples.npz`` (uint8 N x H x W x C; ``labels`` for conditional models; ``draws``, the
  images G was asked for). ``metrics_for`` scores such a set, and the evaluation itself goes through
  it, so ``python -m trainers.evaluate`` on a saved ``samples.npz`` reproduces the trial's numbers:
  features come from the same batches (the overall set, then the rest, each in ``batch_size``
  chunks), and each class's scored samples are its first N rows.

The metrics themselves, each registered with the names it reports, are ``trainers.metrics.scores``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainers.data import DataBundle, to_uint8
from trainers.metrics import fidelity, perclass
from trainers.metrics.cache import digest, load_or_compute
from trainers.metrics.fidelity import JUDGE_NAME, register_judge
from trainers.metrics.judge import load_or_train_judge
from trainers.metrics.scores import METRICS, Scope, Scored, as_numpy
from trainers.settings import EvalConfig, TrainConfig

EVAL_SEED_OFFSET = 1_000_003  # evaluation noise differs from the training stream of the same seed
GRID_PER_ROW = 12
SAMPLES_FILE = "samples.npz"


@dataclass(frozen=True)
class EvalOptions:
    """What an evaluation reads of a trial's config (stylegan2's ``MetricOptions``), not the whole config."""

    eval: EvalConfig  # the eval.* keys
    cache_dir: Path  # the judge and the reference statistics, shared by trials
    seed: int  # the trial's seed: the evaluation noise is seeded by it (+ EVAL_SEED_OFFSET)

    @classmethod
    def of(cls, cfg: TrainConfig) -> EvalOptions:
        return cls(cfg.eval, Path(cfg.cache_dir), int(cfg.seed))


class Evaluator:
    def __init__(self, options: EvalOptions, data: DataBundle, device: torch.device):
        self.options = options
        self.ecfg = options.eval
        self.data = data
        self.device = torch.device(device)
        self.cache_dir = Path(options.cache_dir)
        # the dataset-dependent checks first: a person's mistake is refused before anything is written
        self.pools = perclass.reference_pools(data.test.labels, data.num_classes, self.ecfg.split)
        pool_sizes = [min(len(part[c]) for part in self.pools.values()) for c in range(data.num_classes)]
        where = data.name if self.ecfg.split == "test" else f"{data.name}, halved by eval.split=val_test,"
        self.per_class_n = perclass.resolve_per_class_n(self.ecfg.per_class_n, pool_sizes, where)
        self.max_draws = perclass.resolve_max_draws(self.ecfg.max_draws, self.per_class_n, self.ecfg.num_samples,
                                                    data.train_counts)
        # Inception next: a missing weights file is refused before anything is trained or written
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
        # per part ("" the reported test figures, "val/" the validation half under eval.split=val_test)
        self.parts = self._class_reference(ref)
        test = self.parts[""]
        self.ref_class_index = [c["value"][0] for c in test["classes"]]  # the first draw behind each class
        self.ref_class_features = [self.ref_features[i] for i in self.ref_class_index]
        self.ref_class_stats = [as_numpy(c["value_stats"][0]) for c in test["classes"]]
        self.wrong_class = {k: c["wrong"] for k, c in enumerate(test["classes"])}
        self.fid_floor = [c["floor"] for c in test["classes"]]

    # -- reference statistics of the balanced test split (cached like the judge) -----------------
    def _extractor_id(self) -> tuple:
        if self.features is self.judge:
            return ("judge", self.judge_path.name)
        weights = self.ecfg.inception_weights
        stat = os.stat(weights) if weights else None
        return (fidelity.INCEPTION_NAME, weights, stat and (stat.st_size, stat.st_mtime_ns))

    def _reference(self) -> dict:
        key = digest("reference", 2, self._extractor_id(), self.data.num_classes, self.data.test.images,
                     self.data.test.labels)
        path = self.cache_dir / f"reference-{key}.pt"

        def compute() -> dict:
            feats = self.features_of(self.data.test.images)[0]
            stats = fidelity.statistics(feats)
            # extractors compute in float32, so storing the features as float32 loses nothing
            return {"features": feats.float(), "labels": self.data.test.labels.clone(),
                    "mu": torch.from_numpy(stats["mu"]), "sigma": torch.from_numpy(stats["sigma"])}

        return load_or_compute(path, compute)[0]

    def _class_reference(self, ref: dict) -> dict[str, dict]:
        """Per part: the overall reference (its indices and bootstrap resamples), and per class its
        reference draws with their statistics, its wrong-class figures and its FID floor (cached)."""
        n, k, draws = self.per_class_n, self.data.num_classes, self.ecfg.reference_draws
        key = digest("class-reference", 3, self._extractor_id(), n, perclass.REFERENCE_SEED, perclass.SPLIT_SEED,
                     self.ecfg.split, draws, perclass.FLOOR_SPLITS, self.ecfg.kid_subset_size, ref["features"],
                     ref["labels"])
        path = self.cache_dir / f"class-reference-{key}.pt"
        small = ref["features"].shape[1] <= fidelity.SMALL_FEATURE_DIM

        def compute() -> dict:
            feats = ref["features"].to(torch.float64)
            out: dict[str, Any] = {}
            with fidelity.threads_for(feats.shape[1]):
                for prefix, pools in self.pools.items():
                    whole = torch.cat(pools).sort().values
                    # the overall figures' sd: bootstrap resamples of the part's whole reference (only in the
                    # judge's space: each is a 2048 x 2048 matrix square root in Inception's)
                    boots = perclass.reference_draws(whole, len(whole), draws)[1] if small else []
                    part = {"whole": whole, "boots": boots, "classes": []}
                    gen = torch.Generator().manual_seed(perclass.REFERENCE_SEED)
                    for c in range(k):
                        value, spread = perclass.reference_draws(pools[c], n, draws, perclass.REFERENCE_SEED + c)
                        rest = torch.cat([pools[j] for j in range(k) if j != c])
                        others = rest[torch.randperm(len(rest), generator=gen)[:n]].sort().values
                        stats = [self._stats(feats[i]) for i in value]
                        figures = perclass.class_figures(feats[others], feats[value[0]], as_numpy(stats[0]),
                                                         self.ecfg.kid_subset_size)
                        part["classes"].append({
                            "value": value, "spread": spread, "value_stats": stats,
                            "spread_stats": stats if spread is value else [self._stats(feats[i]) for i in spread],
                            "wrong": figures, "floor": perclass.fid_floor(feats, pools[c], n)})
                    out[prefix] = part
            return out

        return load_or_compute(path, compute)[0]

    @staticmethod
    def _stats(features: torch.Tensor) -> dict:
        stats = fidelity.statistics(features)
        return {"mu": torch.from_numpy(stats["mu"]), "sigma": torch.from_numpy(stats["sigma"])}

    # -- features ----------------------------------------------------------------------------------
    def features_of(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(FID/KID features, judge logits, Inception logits or None) of uint8 images, batched."""
        bs = self.ecfg.batch_size
        with fidelity.one_thread():  # the judge is small (see one_thread)
            feats, judge_logits = fidelity.extract(self.judge, images, bs, self.device)
        if self.features is self.judge:
            return feats, judge_logits, None
        feats, is_logits = fidelity.extract(self.features, images, bs, self.device)
        return feats, judge_logits, is_logits

    def judge_labels(self, images: torch.Tensor) -> torch.Tensor:
        with fidelity.one_thread():
            return fidelity.extract(self.judge, images, self.ecfg.batch_size, self.device)[1].argmax(1)

    # -- sampling ----------------------------------------------------------------------------------
    def requested_labels(self, method) -> torch.Tensor | None:
        if not getattr(method, "conditional", False):
            return None
        n, k = self.ecfg.num_samples, self.data.num_classes
        labels = torch.arange(k).repeat_interleave(n // k)
        return torch.cat([labels, torch.arange(n - len(labels))])

    @torch.no_grad()
    def sample(self, method) -> dict[str, Any]:
        """The scored set: the overall set, then the top-up (see the module doc), with the overall
        set's features (extracted batch by batch as it is drawn) and the number of images drawn."""
        n, bs, k, per_class = self.ecfg.num_samples, self.ecfg.batch_size, self.data.num_classes, self.per_class_n
        gen = torch.Generator().manual_seed(self.options.seed + EVAL_SEED_OFFSET)
        requested = self.requested_labels(method)
        G = getattr(method, "G", None)
        was_training = G.training if G is not None else False
        if G is not None:
            G.eval()

        def draw(count: int, labels: torch.Tensor | None = None) -> torch.Tensor:
            return to_uint8(method.generate(count, labels=labels, generator=gen).detach().cpu())

        try:
            overall, feats, judge_logits, is_logits = [], [], [], []
            for start in range(0, n, bs):
                count = min(bs, n - start)
                images = draw(count, requested[start:start + count] if requested is not None else None)
                f, jl, il = self.features_of(images)
                overall.append(images)
                feats.append(f)
                judge_logits.append(jl)
                if il is not None:
                    is_logits.append(il)
            judge_logits = torch.cat(judge_logits)
            classes = requested if requested is not None else judge_logits.argmax(1)
            need = (per_class - torch.bincount(classes, minlength=k)).clamp_(min=0)
            drawn = n
            kept: list[torch.Tensor] = []
            kept_labels: list[torch.Tensor] = []
            if requested is not None:  # a conditional G is asked for each class directly
                wanted = torch.arange(k).repeat_interleave(need)
                for start in range(0, len(wanted), bs):
                    labels = wanted[start:start + bs]
                    kept.append(draw(len(labels), labels))
                    kept_labels.append(labels)
                drawn += len(wanted)
            else:
                while drawn < self.max_draws and any(
                        not perclass.hopeless(per_class - int(need[c]), drawn, int(need[c]), self.max_draws - drawn)
                        for c in torch.nonzero(need).flatten().tolist()):
                    images = draw(min(bs, self.max_draws - drawn))
                    drawn += len(images)
                    judged = self.judge_labels(images)
                    take = torch.zeros(len(images), dtype=torch.bool)
                    for c in torch.nonzero(need).flatten().tolist():
                        rows = torch.nonzero(judged == c).flatten()[: int(need[c])]
                        take[rows] = True
                        need[c] -= len(rows)
                    if bool(take.any()):
                        kept.append(images[take])
        finally:
            if G is not None:
                G.train(was_training)
        images = torch.cat(overall + kept)
        labels = torch.cat([requested] + kept_labels) if requested is not None else None
        return {"images": images, "labels": labels, "draws": drawn, "features": torch.cat(feats),
                "judge_logits": judge_logits, "is_logits": torch.cat(is_logits) if is_logits else None}

    # -- metrics -----------------------------------------------------------------------------------
    def metrics_for(self, images: torch.Tensor, labels: torch.Tensor | None = None, draws: int | None = None,
                    overall: tuple | None = None) -> dict[str, float]:
        """Every metric of a scored set of uint8 N x C x H x W images (``labels`` given: conditional).

        The first ``eval.num_samples`` rows are the overall set (fewer rows: all of them, and ``fid_n``
        says so); every row may fill a class's N. ``overall`` = (features, judge logits, Inception
        logits) of the overall rows when already extracted: the same batches as extracting them here.
        """
        return self._score(images, labels, draws, overall)[0]

    def _score(self, images, labels, draws, overall) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
        """(metrics, the judge's label of every row, the class every row is scored as)."""
        n = min(self.ecfg.num_samples, len(images))
        head = overall if overall is not None else self.features_of(images[:n])
        feats, judge_logits = head[0], head[1]
        if len(images) > n:  # the top-up in batches of its own after the overall set, as a rescored samples.npz is
            rest = self.features_of(images[n:])
            feats, judge_logits = torch.cat([feats, rest[0]]), torch.cat([judge_logits, rest[1]])
        judged = judge_logits.argmax(1).numpy()
        classes = labels.numpy() if labels is not None else judged
        draws = len(images) if draws is None else int(draws)
        scored = Scored(feats, judge_logits[:n].numpy(), head[2], judged, classes, n, draws,
                        perclass.first_n_per_class(classes, self.data.num_classes, self.per_class_n))
        scope = Scope(tuple(self.parts), self.data.num_classes, head[2] is not None, labels is not None)
        with fidelity.threads_for(feats.shape[1]):
            metrics = self._metrics(scored, scope)
        return metrics, judged, classes

    def _metrics(self, scored: Scored, scope: Scope) -> dict[str, float]:
        """Every registered metric of ``scope``, each checked against the names it declares (the names a
        space is validated against before anything runs)."""
        out: dict[str, float] = {}
        for name, m in METRICS.items():
            if not m.when(scope):
                continue
            values, declared = m.compute(self, scored), set(m.expand(scope))
            if set(values) != declared:  # a programming error, caught at the first evaluation anywhere
                raise RuntimeError(f"metric '{name}' returned {sorted(set(values) ^ declared)} unlike its "
                                   f"declared names; declare what it reports in its @metric(...)")
            out.update(values)
        return out

    def evaluate(self, method, step: int, out_dir: str | Path | None = None) -> dict[str, Any]:
        drawn = self.sample(method)
        images, labels = drawn["images"], drawn["labels"]
        metrics, judged, classes = self._score(images, labels, drawn["draws"],
                                               (drawn["features"], drawn["judge_logits"], drawn["is_logits"]))
        if out_dir is not None and (self.ecfg.images or self.ecfg.save_samples):
            out_dir = Path(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
        if out_dir is not None and self.ecfg.save_samples:
            save_samples(out_dir / SAMPLES_FILE, images, labels, drawn["draws"])
        if out_dir is not None and self.ecfg.images:
            from trainers.metrics.plots import class_histogram, sample_grid

            k, n = self.data.num_classes, min(self.ecfg.num_samples, len(images))
            rows = perclass.first_n_per_class(classes, k, GRID_PER_ROW)  # rare classes too, from the top-up
            sample_grid([images[torch.from_numpy(r)] for r in rows],
                        (self.data.channels, self.data.resolution, self.data.resolution),
                        out_dir / f"samples_step{step}.png")
            class_histogram(judged[:n], self.data.train_counts, out_dir / f"class_hist_step{step}.png", step,
                            class_names=self.data.class_names)
        return metrics


def save_samples(path: Path, images: torch.Tensor, labels: torch.Tensor | None, draws: int) -> None:
    """``samples.npz``: uint8 N x H x W x C images (the layout ``trainers.evaluate`` reads), the
    requested labels of a conditional model, and how many images G was asked for."""
    arrays = {"images": images.permute(0, 2, 3, 1).contiguous().numpy(), "draws": np.int64(draws)}
    if labels is not None:
        arrays["labels"] = labels.numpy().astype(np.int64)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
