"""How FID and KID depend on the sample count N, in the judge's 32-d space (issue 15's premise).

* ``gaussian``: FID of two independent samples of one 32-d standard Gaussian, at N each.
* ``per_class_equal``: real against real, one class at a time: N training images of class k against
  N test images of class k (the equal-N scoring), mean over classes and draws.
* ``per_class_old``: the old scoring: N training images of class k against *all* its test images
  (~36 on digits), as when a class got N judged samples.
* ``kid_per_class_equal``: KID of the same sets as ``per_class_equal`` (unbiased: ~0 at every N).
* ``overall``: N training images (any class) against the whole test split: the bias of the overall
  FID at ``eval.num_samples = N``.

    python benchmarks/fid_bias.py [draws=10]

Last line: {"gaussian": {N: fid}, "per_class_equal": {...}, ...}
"""

from __future__ import annotations

import json
import sys
import tempfile

import numpy as np
import torch


def main() -> None:
    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    draws = int(args.get("draws", 10))
    torch.set_num_threads(1)

    from trainers.config import make_config
    from trainers.data import load_data
    from trainers.metrics import fidelity, make_evaluator

    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    out: dict[str, dict[int, float]] = {"gaussian": {}, "per_class_equal": {}, "per_class_old": {},
                                        "kid_per_class_equal": {}, "overall": {}}
    for n in (10, 20, 35, 50, 100, 1000):
        values = [fidelity.fid_between(rng.standard_normal((n, 32)), rng.standard_normal((n, 32)))
                  for _ in range(draws)]
        out["gaussian"][n] = round(float(np.mean(values)), 2)
    with tempfile.TemporaryDirectory() as root:
        cfg = make_config({"dataset": "digits", "cache_dir": f"{root}/cache"})
        data = load_data(cfg)
        ev = make_evaluator(cfg, data, torch.device("cpu"))
        train_feats = ev.features_of(data.full_train.images)[0]
        train_labels, test_labels = data.full_train.labels, ev.ref_labels
        k = data.num_classes
        smallest = min(data.test.counts(k))
        for n in (10, 20, smallest, 100):
            equal, old, kid = [], [], []
            for _ in range(draws):
                for c in range(k):
                    mine = train_feats[train_labels == c]
                    mine = mine[torch.randperm(len(mine), generator=gen)[:n]]
                    real = ev.ref_features[test_labels == c]
                    old.append(fidelity.fid_between(mine, real))
                    if n <= len(real):
                        real = real[torch.randperm(len(real), generator=gen)[:n]]
                        equal.append(fidelity.fid_between(mine, real))
                        kid.append(fidelity.kid(mine, real, n))
            out["per_class_old"][n] = round(float(np.mean(old)), 3)
            if equal:
                out["per_class_equal"][n] = round(float(np.mean(equal)), 3)
                out["kid_per_class_equal"][n] = round(float(np.mean(kid)), 4)
        for n in (100, 250, 500, 1000):
            values = [fidelity.fid_between(train_feats[torch.randperm(len(train_feats), generator=gen)[:n]],
                                           ev.ref_features, ev.ref_stats) for _ in range(draws)]
            out["overall"][n] = round(float(np.mean(values)), 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
