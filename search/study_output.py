"""What the driver says about a study: the space it runs (before the first store is written), and how the
study ended: finished (with its best configuration and report), or stopped early with its MLflow runs marked,
the traceback kept in a file and the command that resumes it."""

from __future__ import annotations

import sys
import time
import traceback

import yaml

from search.preemption import interrupted_status
from search.stores import Stores
from search.study import Study
from search.study_ray import quiet_ray
from trainers.fields import one_line


def gsr_off_note(space) -> str | None:
    """One line when a space runs method=cgan with gsr_lambda neither fixed nor searched: its default 0.0
    trains the conditional GAN without gSR (the presets cannot carry it; the gSR spaces search it)."""
    if "cgan" not in space.methods() or "gsr_lambda" in space.fixed:
        return None
    if any(p.name == "gsr_lambda" for p in space.params):
        return None
    return (f"# note: method=cgan runs without gSR in '{space.name}' (gsr_lambda is neither fixed nor searched, "
            f"default 0.0); add gsr_lambda: 0.5 (gSRGAN's sn_reg_weight) under fixed: to turn it on")


def print_study(space, stores: Stores, resume: bool) -> None:
    print(f"# study '{space.name}' ({'resume' if resume else 'new'}), stores under {stores.root}")
    print(yaml.safe_dump(space.to_dict(), sort_keys=False, allow_unicode=True).rstrip())
    note = gsr_off_note(space)
    if note:
        print(note)
    sys.stdout.flush()


def finish(study: Study, results, started: float, report: bool) -> int:
    from optuna.trial import TrialState

    from search import tracking

    quiet_ray()
    space, stores = study.space, study.stores
    errors = len(results.errors)
    optuna_study = stores.load_study(space.name)
    unfinished = len(results) - results.num_terminated - errors
    untold = optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    if unfinished or untold:  # Ray returns normally after Ctrl-C, with the study short of its end
        short = f"{len(untold)} configuration(s) unfinished" if untold else f"{unfinished} trial(s) unfinished"
        return stopped(study, KeyboardInterrupt(short))
    complete = optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    minutes = (time.time() - started) / 60
    print(f"\n# study '{space.name}' done in {minutes:.1f} min: {len(results)} trials "
          f"({errors} failed), {len(complete)} Optuna configurations complete")
    if complete and not space.multi_objective:
        best = optuna_study.best_trial
        print(f"# best {space.objective[0]} = {best.value:.4g} (mean over seeds, failed replicates at their "
              f"penalty) with {best.params}")
    if report:
        from search.report import write_report

        print(f"# report: {write_report(space, stores)}")
    # after the report: a report that fails stops the study like any other error, and resume writes it
    tracking.client_for(stores.tracking_uri).set_terminated(study.parent_run_id, status="FINISHED")
    print(f"# MLflow UI: {tracking.where_to_look(stores, study.experiment_id)}")
    print(f"# resume or extend: {study.resume_cmd}")  # the same arguments: a preset or override kept
    return 0


def cause(error: BaseException) -> str:
    """``Type: message`` of what ended the study; Ray's TuneError carries its cause as traceback text."""
    kind, message = type(error).__name__, one_line(error)
    lines = str(error).strip().splitlines()
    if lines and lines[0].startswith("Traceback (most recent call last)"):
        kind, _, message = lines[-1].partition(":")
        kind, message = kind.rsplit(".", 1)[-1], one_line(message)
    return f"{kind}: {message}" if message else kind


def stopped(study: Study, error: BaseException) -> int:
    """The study ended early after its stores existed: mark its MLflow runs (the parent FAILED, or KILLED
    when interrupted; the runs of unfinished trials KILLED), keep the traceback in a file, and say in
    one line what happened and how to resume. Optuna's unfinished trials stay RUNNING: the resumed
    searcher still tracks them (telling them FAIL now would leave a configuration whose replicates all
    finished marked FAIL); those it does not track it tells FAIL, and it runs their configurations again."""
    from search import tracking

    space, stores = study.space, study.stores
    interrupted = isinstance(error, KeyboardInterrupt)
    how, code = interrupted_status()
    if interrupted:
        what = f"was interrupted by {how}" + (f" ({error})" if str(error) else "")
    else:
        what = f"stopped on {cause(error)[:400]}"
    if error.__traceback__ is not None:  # raised, not Ray's run ending short after Ctrl-C
        log = stores.crash_log(space.name)
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("".join(traceback.format_exception(error)))
            what += f" (traceback in {log})"
        except OSError as e:  # a full disk
            what += f" (no traceback written: {e.strerror or e})"
    marked = tracking.mark_stopped(stores.tracking_uri, study.experiment_id, study.parent_run_id,
                                   "KILLED" if interrupted else "FAILED")
    try:
        quiet_ray()
    except Exception:  # noqa: BLE001 - a Ray that cannot shut down cleanly must not hide the line below
        pass
    print(f"error: study '{space.name}' {what}; {marked}; resume it with: {study.resume_cmd}",
          file=sys.stderr, flush=True)
    return code if interrupted else 1
