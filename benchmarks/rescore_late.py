"""Is a late rise of FID real, or the evaluation's noise? Re-score a run's checkpoints on more samples.

    python benchmarks/rescore_late.py WORKDIR steps=1800,2100 [num_samples=5000] [latents=4]

``WORKDIR`` is a run's work dir (``benchmarks/recipe_pilot.py`` keeps every checkpoint under
``runs/pilot/work/NAME``). Each listed step's G is loaded from its checkpoint and scored by the run's own
evaluator (its config, judge and reference statistics) on ``num_samples`` samples, once per latent stream
(``latents`` streams, each a different evaluation seed), instead of the loop's one stream of
``eval.num_samples``. Both steps are scored on the same streams, so the ratio of the last step to the
earlier one is paired. Prints one row per step and, last, a JSON line with the FIDs per stream and the
paired ratio (mean and range over the streams).

The acceptance of issue 26 asks that a run's last FID be <= 1.1 x its best earlier one. With one
1,000-sample evaluation per step the minimum over earlier steps is biased low by the evaluation's own
noise; this tells whether a flagged rise survives a larger, repeated evaluation.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rescore(workdir: Path, steps: list[int], num_samples: int, latents: int) -> dict:
    import torch

    from trainers.checkpoint import load_state
    from trainers.config import make_config
    from trainers.data import load_data
    from trainers.methods import get_method
    from trainers.metrics import evaluator as evaluator_module
    from trainers.metrics import make_evaluator

    torch.set_num_threads(1)
    # one run: every checkpoint holds the same config, so data, nets and the evaluator are built once
    checkpoints = [workdir / "checkpoints" / f"step_{step:09d}" for step in steps]
    raw = json.loads((checkpoints[0] / "config.json").read_text())
    raw["eval"] = {**raw.get("eval", {}), "num_samples": num_samples, "images": False, "save_samples": False}
    cfg = make_config(raw)
    data = load_data(cfg)
    device = torch.device("cpu")
    method = get_method(cfg.method)(cfg, data, device)
    evaluator = make_evaluator(cfg, data, device)
    base = evaluator_module.EVAL_SEED_OFFSET
    fids: dict[int, list[float]] = {}
    for step, ckpt in zip(steps, checkpoints):
        method.G.load_state_dict(load_state(ckpt)["G"])
        fids[step] = []
        try:
            for stream in range(latents):
                evaluator_module.EVAL_SEED_OFFSET = base + 7919 * (stream + 1)  # not the loop's own stream
                fids[step].append(float(evaluator.evaluate(method, step)["fid"]))
        finally:
            evaluator_module.EVAL_SEED_OFFSET = base
        print(f"step {step}: fid {statistics.mean(fids[step]):.3f} (streams {[round(f, 3) for f in fids[step]]})",
              flush=True)
    first, last = steps[0], steps[-1]
    ratios = [b / a for a, b in zip(fids[first], fids[last])]
    return {"workdir": str(workdir), "num_samples": num_samples, "latents": latents,
            "fid": {str(s): v for s, v in fids.items()}, "ratio_last_to_first": round(statistics.mean(ratios), 4),
            "ratio_range": [round(min(ratios), 4), round(max(ratios), 4)]}


def main(argv: list[str]) -> int:
    if not argv or "=" in argv[0]:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    args = dict(a.split("=", 1) for a in argv[1:])
    steps = [int(s) for s in args.get("steps", "").split(",") if s]
    if len(steps) < 2:
        print("error: steps= needs two or more steps, e.g. steps=1800,2100", file=sys.stderr)
        return 2
    result = rescore(Path(argv[0]), steps, int(args.get("num_samples", 5000)), int(args.get("latents", 4)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
