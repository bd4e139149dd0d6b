"""Cost of per-class FID and the minority diagnostics on top of the overall FID, on the same samples.

The overall FID alone = one feature pass + FID from its statistics; the full evaluation = the same one
pass + FID, KID, per-class FID from slices, histograms and KLs. Interleaved repeats, medians.

    python benchmarks/eval_cost.py [rounds=7] [num_samples=1000] [threads=1]

Last line: {"per_class_eval_ratio": ..., "eval_peak_rss_mb": ..., ...}
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import tempfile
import time

import torch


def main() -> None:
    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    rounds, n, threads = int(args.get("rounds", 7)), int(args.get("num_samples", 1000)), int(args.get("threads", 1))
    torch.set_num_threads(threads)
    from torch_fidelity.metric_fid import fid_features_to_statistics

    from trainers.config import make_config
    from trainers.data import load_data
    from trainers.metrics import make_evaluator
    from trainers.metrics.evaluator import fid_from_stats

    with tempfile.TemporaryDirectory() as root:
        cfg = make_config({"root": root, "eval.num_samples": n})
        data = load_data(cfg)
        ev = make_evaluator(cfg, data, torch.device("cpu"))
        # "generated" samples: training images, drawn with replacement up to num_samples
        images = data.full_train.images[torch.randint(len(data.full_train), (n,), generator=torch.Generator().manual_seed(0))]
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        def fid_only():
            feats, _ = ev.extract(ev.features, images)
            return fid_from_stats(fid_features_to_statistics(feats), ev.ref_stats)

        def per_class():  # overall FID + per-class FID + diagnostics (the numerator)
            return ev.metrics_for(images, with_kid=False)

        def full():  # what every evaluation runs: the above plus KID
            return ev.metrics_for(images)

        fns = {"fid_only": fid_only, "per_class": per_class, "full": full}
        times = {name: [] for name in fns}
        for r in range(rounds):
            for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                t0 = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - t0)
        fid_s, per_class_s, full_s = (statistics.median(times[k]) for k in ("fid_only", "per_class", "full"))
        print(json.dumps({"per_class_eval_ratio": round(per_class_s / fid_s, 4),
                          "full_eval_with_kid_ratio": round(full_s / fid_s, 4), "fid_only_s": round(fid_s, 4),
                          "full_eval_s": round(full_s, 4),
                          "eval_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                          "rss_before_eval_mb": round(rss_before, 1), "num_samples": n, "rounds": rounds}))


if __name__ == "__main__":
    main()
