"""How often the top-up gives up a class that a faithful generator would have filled, and where it
gives up a class that is never drawn: a simulation of the evaluator's loop with the real
``perclass.hopeless`` and ``perclass.resolve_max_draws``.

A faithful generator draws the rarest class with its training prior ``p_min``; the judge recognises
it with probability ``recall``. The overall set is ``num_samples`` draws, then batches of
``batch_size`` until the class has N, the cap is reached, or the class is hopeless.

    python benchmarks/hopeless_rule.py [runs=20000] [n=35] [tail=1] [total=339] [recall=0.95]

Last line: {"faithful_not_filled": ..., "never_drawn_given_up_at": ..., ...}
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main() -> None:
    from trainers.metrics import perclass

    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    runs, n = int(args.get("runs", 20000)), int(args.get("n", 35))
    tail, total = int(args.get("tail", 1)), int(args.get("total", 339))  # digits at rho = 100: 1 of 339
    recall = float(args.get("recall", 0.95))
    num_samples, batch = int(args.get("num_samples", 500)), int(args.get("batch_size", 250))
    cap = perclass.resolve_max_draws(None, n, num_samples, [total - tail, tail])
    p = tail / total * recall
    rng = np.random.default_rng(0)

    def run(rate: float) -> tuple[str, int]:
        drawn, got = num_samples, int(rng.binomial(num_samples, rate))
        while got < n and drawn < cap and not perclass.hopeless(got, drawn, n - got, cap - drawn):
            step = min(batch, cap - drawn)
            drawn += step
            got += int(rng.binomial(step, rate))
        return ("filled" if got >= n else "cap" if drawn >= cap else "given up"), drawn

    outcomes = [run(p) for _ in range(runs)]
    print(json.dumps({
        "faithful_not_filled": sum(o != "filled" for o, _ in outcomes),
        "faithful_given_up_early": sum(o == "given up" for o, _ in outcomes),
        "runs": runs, "faithful_mean_draws": round(float(np.mean([d for _, d in outcomes]))),
        "never_drawn_given_up_at": run(0.0)[1], "draws_cap": cap, "per_class_n": n,
        "tail_prior": round(tail / total, 6), "judge_recall": recall, "alpha": perclass.HOPELESS_ALPHA,
    }))


if __name__ == "__main__":
    main()
