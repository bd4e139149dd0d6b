"""One trial from the shell, no search stack:

    python -m trainers.train method=dcgan dataset=digits steps=200 eval_every=100 seed=0

Any config key is ``key=value`` or ``a.b=value``. Three keys belong to this command only:
``root=DIR`` (default ``runs``: the cache goes to ``<root>/cache`` unless ``cache_dir=`` says otherwise),
``workdir=DIR`` (where checkpoints go; default ``<root>/train/<method>-<dataset>-seed<seed>``) and
``resume=true`` (continue from the newest readable checkpoint in that work dir). A progress bar goes
to stderr; one JSON object per evaluation goes to stdout.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from trainers.cli import directory_arg, nan_as_null, root_and_cache, run_command
from trainers.config import ConfigError, make_config, parse_overrides

CLI_ONLY = ("root", "workdir", "resume")


def _json_default(value):
    return float(value)


def main(argv: list[str] | None = None) -> int:
    return run_command(__doc__, _train, argv)


def _train(argv: list[str]) -> int:
    from trainers.checkpoint import CheckpointError
    from trainers.loop import DivergedError

    try:
        overrides = parse_overrides(argv)
        root = root_and_cache(overrides)
        workdir = overrides.pop("workdir", None)
        if workdir is not None:
            directory_arg("workdir", workdir)
        resume = overrides.pop("resume", False)
        if not isinstance(resume, bool):
            raise ConfigError(f"resume={resume!r} must be true or false")
        cfg = make_config(overrides)
        workdir = Path(workdir or root / "train" / f"{cfg.method}-{cfg.dataset}-seed{cfg.seed}")
        if resume and not (workdir / "checkpoints").is_dir():
            raise ConfigError(f"resume=true but {workdir} holds no checkpoint; drop resume=true to start afresh "
                              f"or pass workdir= of an earlier run")
        from trainers.loop import train

        def report(metrics, checkpoint_dir):
            print(json.dumps(nan_as_null({**metrics, "checkpoint": checkpoint_dir}), default=_json_default), flush=True)

        train(cfg, report, workdir=workdir, resume_from=workdir if resume else None, progress=True)
    except CheckpointError as e:
        print(f"error: {e}; start afresh without resume=true", file=sys.stderr)
        return 2
    except DivergedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; resume with the same command plus resume=true", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
