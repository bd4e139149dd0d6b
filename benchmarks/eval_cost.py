"""Cost of per-class FID and the minority diagnostics on top of the overall FID, on the same samples.

Overall FID alone = one feature pass + torch-fidelity's FID from its statistics. The numerator of
``per_class_eval_ratio`` = the same one pass + the overall FID + per-class FID from slices of that
pass + the histogram, KLs, dropped classes and judge confidence. KID (part of every evaluation too)
is timed separately (``full_eval_with_kid_ratio``). The three are repeated in interleaved rounds
(alternating order) on the same samples; the ratios are medians over rounds of the
per-round ratio, in process CPU time (everything runs on one
thread here, so CPU time is the work done, and other processes on a shared machine do not add to
it; the wall-clock ratio is reported too). The "generated" samples are training images drawn
with replacement, so every class is populated (the per-class work is at its largest).

Then one real evaluation (``Evaluator.evaluate`` of a DCGAN: sampling, features, every metric, the
two PNGs) with the default ``eval.num_samples``: its wall time and the process's peak RSS after it.

    python benchmarks/eval_cost.py [rounds=31] [num_samples=<eval.num_samples default>] [threads=1]

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


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    from trainers.config import EvalConfig, make_config

    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    rounds = int(args.get("rounds", 31))
    n = int(args.get("num_samples", EvalConfig().num_samples))
    threads = int(args.get("threads", 1))
    torch.set_num_threads(threads)

    from trainers.data import load_data
    from trainers.methods import get_method
    from trainers.metrics import fidelity, make_evaluator

    with tempfile.TemporaryDirectory() as root:
        cfg = make_config({"cache_dir": f"{root}/cache", "eval.num_samples": n})
        data = load_data(cfg)
        rss_before_judge = peak_rss_mb()
        t0 = time.perf_counter()
        ev = make_evaluator(cfg, data, torch.device("cpu"))
        construct_s = time.perf_counter() - t0
        pick = torch.randint(len(data.full_train), (n,), generator=torch.Generator().manual_seed(0))
        images = data.full_train.images[pick]

        def fid_only():  # under the same BLAS thread setting as the evaluator's metrics
            feats, _, _ = ev.features_of(images)
            with fidelity.blas_threads_for(feats.shape[1]):
                return fidelity.fid_of_features(feats, ev.ref_stats)

        def per_class():  # overall FID + per-class FID + diagnostics, one feature pass
            return ev.metrics_from(*ev.features_of(images), with_kid=False)

        def full():  # what every evaluation computes: the above plus KID
            return ev.metrics_from(*ev.features_of(images))

        assert per_class()[0]["fid"] == fid_only()  # the same overall FID either way
        fns = {"fid_only": fid_only, "per_class": per_class, "full": full}
        cpu: dict[str, list[float]] = {name: [] for name in fns}
        wall: dict[str, list[float]] = {name: [] for name in fns}
        for r in range(rounds):
            for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                t, c = time.perf_counter(), time.process_time()
                fns[name]()
                cpu[name].append(time.process_time() - c)
                wall[name].append(time.perf_counter() - t)
        fid_s, per_class_s, full_s = (statistics.median(cpu[k]) for k in ("fid_only", "per_class", "full"))

        def paired(times, name):  # per-round ratios of neighbours in time, so load drift cancels
            return statistics.median(a / b for a, b in zip(times[name], times["fid_only"]))

        # one real evaluation with the default sample count: wall time and peak memory
        method = get_method("dcgan")(cfg, data, torch.device("cpu"))
        rss_before_eval = peak_rss_mb()
        eval_times = []
        for step in range(3):
            with tempfile.TemporaryDirectory() as out:
                t = time.perf_counter()
                metrics = ev.evaluate(method, step, out)
                eval_times.append(time.perf_counter() - t)
        print(json.dumps({
            "per_class_eval_ratio": round(paired(cpu, "per_class"), 4),
            "per_class_eval_ratio_wall": round(paired(wall, "per_class"), 4),
            "full_eval_with_kid_ratio": round(paired(cpu, "full"), 4),
            "fid_only_s": round(fid_s, 4), "per_class_eval_s": round(per_class_s, 4), "full_metrics_s": round(full_s, 4),
            "evaluate_s": round(statistics.median(eval_times), 3), "evaluate_first_s": round(eval_times[0], 3),
            "eval_peak_rss_mb": round(peak_rss_mb(), 1), "rss_before_eval_mb": round(rss_before_eval, 1),
            "rss_before_judge_mb": round(rss_before_judge, 1),
            "judge_test_accuracy": round(ev.judge_accuracy, 4), "judge_train_s": round(ev.judge_train_seconds, 2),
            "evaluator_construct_s": round(construct_s, 2), "num_samples": n, "rounds": rounds,
            "threads": threads, "metric_count": len(metrics),
        }))


if __name__ == "__main__":
    main()
