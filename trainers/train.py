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
import sys
from pathlib import Path

from trainers.cli import directory_arg, nan_as_null, root_and_cache, run_command
from trainers.config import make_config, parse_overrides
from trainers.fields import ConfigError

CLI_ONLY = ("root", "workdir", "resume")
# keys a resumed run may change without becoming another run: where things are, the device and the
# speed options that train the same (tests/test_speed_options.py), how many checkpoints are kept, the
# test-only fault injections; ``steps`` may grow (the run is continued further), nothing else may change
RESUME_SAFE = ("cache_dir", "data_root", "download", "device", "compile", "channels_last", "keep_checkpoints")


def check_same_run(workdir: Path, cfg) -> None:
    """Refuse (one line) a resume whose config differs from the one its checkpoint was trained with:
    weights of another architecture, method or data would fail to load, or load and train another run."""
    from trainers import checkpoint as ckpt
    from trainers.config import dotted, to_dict

    saved_file = None
    for folder in reversed(ckpt.checkpoint_dirs(workdir)):  # the newest checkpoint with a readable config
        try:
            saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(saved, dict):
            saved_file = folder / "config.json"
            break
    if saved_file is None:
        return  # no readable config: the checkpoint's own loading says what is wrong
    old, new = dotted(saved), dotted(to_dict(cfg))
    changed = sorted(k for k in set(old) | set(new)
                     if k not in RESUME_SAFE and not k.startswith("fault.")
                     and (old.get(k, "(unset)") != new.get(k, "(unset)")
                          or type(old.get(k)) is not type(new.get(k))))
    if "steps" in changed and isinstance(old.get("steps"), int) and new["steps"] > old["steps"]:
        changed.remove("steps")  # a longer run of the same training
    if changed:
        shown = ", ".join(f"{k}: {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}" for k in changed[:6])
        more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
        raise ConfigError(f"resume=true but the config differs from the checkpoint's {saved_file} ({shown}{more}); "
                          f"resume with its settings (only a larger steps= may change), or drop resume=true "
                          f"and pass another workdir= to start this run afresh")


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
            workdir = directory_arg("workdir", workdir)  # ~ expanded
        resume = overrides.pop("resume", False)
        if not isinstance(resume, bool):
            raise ConfigError(f"resume={resume!r} must be true or false")
        cfg = make_config(overrides)
        workdir = Path(workdir or root / "train" / f"{cfg.method}-{cfg.dataset}-seed{cfg.seed}")
        if resume and not (workdir / "checkpoints").is_dir():
            raise ConfigError(f"resume=true but {workdir} holds no checkpoint; drop resume=true to start afresh "
                              f"or pass workdir= of an earlier run")
        if resume:
            check_same_run(workdir, cfg)
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
