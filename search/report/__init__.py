"""The study report:  python -m search.report space=NAME [root=runs] [tracking_uri=...] [preset=...]

Reads the Optuna study and the MLflow runs of a space and writes ``<root>/reports/<space>/report.md``
with PNG figures beside it, and logs the folder to the study's MLflow parent run: the ablation table
(mean ± 95% CI over seeds, failed replicates at the space's penalty), the comparisons as one family
adjusted by Holm (primary ones first when the space declares them), evaluation against training noise,
the best configurations and importances within each data condition, figures, sample grids and the
search's efficiency. It first checks the study as ``search.run`` does before a resume (``check_study``): an
unreachable tracking URI or a root with no study is one line and exit 2, a damaged or missing store one line
and exit 1, with nothing written. The package: ``runs`` (loading), ``comparisons`` (families, adjustment,
verdicts), ``figures``, ``sections`` (``write_report`` as a list of section functions), whose sections live in
``summary`` (header, ablation table, evaluation noise, headline), ``ranking`` (best configurations, importances),
``sequential`` and ``sections`` itself.
"""

from __future__ import annotations

import shlex
import sys

from search.report.comparisons import (Comparison, Family, adjust, compared_metrics, failure_comparisons, family,
                                       imbalance_comparisons, method_comparisons, primary_comparisons)
from search.report.figures import figure, plot_per_class, plot_sigma_max
from search.report.runs import TrialRun, by_seed, configurations, efficiency_between, load_runs, trial_runs
from search.report.ranking import importances
from search.report.sections import SECTIONS, write_report
from search.report.summary import fmt, headline
from search.stats import mean_ci
from search.store_checks import StoreError
from trainers.cli import directory_arg, run_command
from trainers.config import parse_overrides
from trainers.fields import ConfigError

__all__ = ["Comparison", "Family", "SECTIONS", "TrialRun", "adjust", "by_seed", "compared_metrics", "configurations",
           "efficiency_between", "failure_comparisons", "family", "figure", "fmt", "headline", "imbalance_comparisons",
           "importances", "load_runs", "main", "mean_ci", "method_comparisons", "plot_per_class", "plot_sigma_max",
           "primary_comparisons", "trial_runs", "write_report"]


def main(argv: list[str] | None = None) -> int:
    try:
        return run_command(__doc__, _report, argv)
    except StoreError as e:  # a damaged or missing store: one line, nothing opened or written
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1


def _report(argv: list[str]) -> int:
    from search.spaces import load_space
    from search.stores import DEFAULT_ROOT, Stores
    from search.tracking import check_tracking_uri

    args = parse_overrides(argv)
    unknown = set(args) - {"space", "root", "tracking_uri", "preset"}
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)}; valid: space, root, tracking_uri, preset")
    if "space" not in args:
        raise ConfigError("say which study: space=NAME")
    uri = args.get("tracking_uri")
    check_tracking_uri(uri)
    space = load_space(str(args["space"]), preset=args.get("preset"))
    # the report is written under root: a path string, ~ expanded, where a folder can really be made
    stores = Stores.at(directory_arg("root", args.get("root", DEFAULT_ROOT)), uri)
    check_study(stores, space.name)
    try:
        path = write_report(space, stores)
    except OSError as e:  # a full disk under root/reports
        raise StoreError(f"the report of study '{space.name}' cannot be written under {stores.report_dir(space.name)} "
                         f"({e.strerror or e}); free space there or copy root= somewhere writable") from None
    print(f"report: {path}")
    return 0


def check_study(stores, name: str) -> None:
    """What ``search.run`` checks before a resume, for a command that only reads the study: the tracking
    server answers, every store file is readable (SQLite intact, MLflow's schema whole), the Optuna study
    and the MLflow store exist (the report would otherwise create an empty store and report nothing).
    A ConfigError (exit 2) for a wrong argument, a StoreError (exit 1) for a damaged or missing store;
    nothing is opened before these read-only checks pass."""
    from search import store_checks, tracking

    tracking.check_reachable(stores.tracking_uri)
    store_checks.check_files(stores, name, ray=False)
    if not stores.has_study(name):
        first = shlex.join(["python", "-m", "search.run", f"space={name}", f"root={stores.root}"])
        raise ConfigError(f"no study '{name}' under root={stores.root} ({stores.optuna_db} holds none); pass the "
                          f"root= it ran under, or run it first: {first}")
    from search.definition import recorded

    spec = recorded(stores, name)
    if spec is not None and spec.get("tracking_uri") != stores.remote_tracking_uri:
        ran_with = spec.get("tracking_uri")
        raise ConfigError(f"study '{name}' ran with tracking_uri={ran_with or '(none: <root>/mlflow.db)'}, not "
                          f"{stores.remote_tracking_uri or '<root>/mlflow.db'}; pass "
                          f"{'tracking_uri=' + ran_with if ran_with else 'no tracking_uri='} to read its runs")
    if not stores.remote_tracking_uri and not stores.mlflow_db.is_file():
        raise StoreError(f"{stores.mlflow_db} (the MLflow store) is missing though {stores.optuna_db} holds study "
                         f"'{name}': its runs are lost; restore {stores.mlflow_db.name} from a backup, or rerun the "
                         f"study under another root=")


if __name__ == "__main__":  # pragma: no cover - python -m search.report runs __main__.py
    sys.exit(main())
