"""Measure the failed-replicate penalty of trainers.metrics.untrained: an untrained DCGAN evaluated at a
space's fixed settings (imbalance 100 where the space has it, else its first cell), seeds 0, 1, 2; prints
the mean of every penalised metric as JSON (the table UNTRAINED in trainers/metrics/untrained.py).

    python benchmarks/untrained_penalty.py space=sdclr_ablation
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search.spaces import load_space  # noqa: E402
from trainers.metrics.untrained import measure  # noqa: E402


def main(argv: list[str]) -> int:
    args = dict(a.split("=", 1) for a in argv if "=" in a)
    space = load_space(args.get("space", "sdclr_ablation"))
    cells = space.grid() if space.sampler == "grid" else [{}]
    cell = next((c for c in cells if c.get("imbalance") == 100), cells[0])
    configs = [space.trial_config(space.sampled(cell) | {"method": "dcgan"}, seed) for seed in (0, 1, 2)]
    print(json.dumps(measure(configs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
