"""Minority - majority with a per-digit quality profile and no imbalance effect: four designs compared.

The six-seed evidence (docs/evidence/evidence_damage/per_class_fid.png, the DCGAN bars; replaced by
per_class.png in the sequential rebuild, git history keeps it) showed every
method scoring some digits worse than others whatever the imbalance: per-class FID of the baseline
about 3.7, 3.2, 2.8, 6.4, 10.1, 6.7, 6.0, 5.8, 4.8, 6.2 for digits 0-9 (4 worst, 1-2 best). A
generator is simulated whose class ``c`` scores ``PROFILE[c] + noise`` (noise sd ``sigma`` per class,
seed and run, independent) at every imbalance: no imbalance effect at all. A study of ``seeds`` seeds
then estimates the minority - majority gap at rho = 100 four ways:

* ``fixed_raw``: the minority classes always 5-9 (natural class order), gap at rho = 100 alone;
* ``fixed_did``: natural order, gap at rho = 100 minus the same seed's gap in its balanced run
  (same classes, difference-in-differences);
* ``random_raw``: the class order shuffled per seed (``trainers.data.class_order``), gap at rho = 100;
* ``random_did``: shuffled per seed and differenced against the seed's balanced run.

For each, over ``studies`` simulated studies: the mean estimate (bias: the truth is 0), its sd across
studies, and how often a 95% t interval over the seeds excludes 0 ("resolved": should be 0.05).

    python benchmarks/minority_confound.py [studies=4000] [seeds=3,6] [sigma=0.5,1,2]

Last line: JSON {design: {seeds: {sigma: {bias, sd, resolved}}}}.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from scipy import stats

from trainers.data import class_order

PROFILE = np.array([3.7, 3.2, 2.8, 6.4, 10.1, 6.7, 6.0, 5.8, 4.8, 6.2])  # DCGAN's per-class FID, evidence_damage
K = len(PROFILE)
MINORITY = K // 2  # the floor(K/2) classes ranked last are the minority (trainers.data.minority_classes)


def gaps(design: str, seeds: int, sigma: float, studies: int, rng: np.random.Generator) -> np.ndarray:
    """studies x seeds per-seed gap estimates of a natural-order design (minority always 5-9)."""
    out = np.empty((studies, seeds))
    minority, majority = np.arange(K - MINORITY, K), np.arange(K - MINORITY)
    for s in range(seeds):
        imbalanced = PROFILE + sigma * rng.standard_normal((studies, K))
        gap = imbalanced[:, minority].mean(1) - imbalanced[:, majority].mean(1)
        if design.endswith("did"):
            balanced = PROFILE + sigma * rng.standard_normal((studies, K))
            gap -= balanced[:, minority].mean(1) - balanced[:, majority].mean(1)
        out[:, s] = gap
    return out


def resolved(per_seed: np.ndarray) -> float:
    n = per_seed.shape[1]
    mean, sd = per_seed.mean(1), per_seed.std(1, ddof=1)
    half = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)
    return float(np.mean(np.abs(mean) > half))


def simulate_random_orders(seeds: int, sigma: float, studies: int, rng: np.random.Generator,
                           did: bool) -> np.ndarray:
    """Like ``gaps`` with shuffled orders, each simulated study on its own seeds (study i: seeds
    i*seeds .. i*seeds + seeds - 1), so the orders vary between studies as between real studies."""
    out = np.empty((studies, seeds))
    for i in range(studies):
        for s in range(seeds):
            order = np.array(class_order(K, i * seeds + s))
            minority, majority = order[K - MINORITY:], order[: K - MINORITY]
            v = PROFILE + sigma * rng.standard_normal(K)
            gap = v[minority].mean() - v[majority].mean()
            if did:
                b = PROFILE + sigma * rng.standard_normal(K)
                gap -= b[minority].mean() - b[majority].mean()
            out[i, s] = gap
    return out


def main() -> None:
    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    studies = int(args.get("studies", 4000))
    seed_counts = [int(x) for x in args.get("seeds", "3,6").split(",")]
    sigmas = [float(x) for x in args.get("sigma", "0.5,1,2").split(",")]
    rng = np.random.default_rng(0)
    result: dict = {}
    for design in ("fixed_raw", "fixed_did", "random_raw", "random_did"):
        result[design] = {}
        for n in seed_counts:
            result[design][n] = {}
            for sigma in sigmas:
                if design.startswith("random"):
                    per_seed = simulate_random_orders(n, sigma, studies, rng, design.endswith("did"))
                else:
                    per_seed = gaps(design, n, sigma, studies, rng)
                est = per_seed.mean(1)
                row = {"bias": round(float(est.mean()), 3), "sd": round(float(est.std()), 3),
                       "resolved": round(resolved(per_seed), 3)}
                result[design][n][sigma] = row
                print(f"{design:11s} seeds={n} sigma={sigma}: bias {row['bias']:+.3f}  sd {row['sd']:.3f}  "
                      f"resolved {row['resolved']:.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
