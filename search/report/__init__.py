"""The study report:  python -m search.report space=NAME [root=runs] [tracking_uri=...] [preset=...]

Reads the Optuna study and the MLflow runs of a space and writes ``<root>/reports/<space>/report.md``
with PNG figures beside it, and logs the folder to the study's MLflow parent run: the ablation table
(mean ± 95% CI over seeds, failed replicates at the space's penalty), the comparisons as one family
adjusted by Holm (primary ones first when the space declares them), evaluation against training noise,
the best configurations and importances within each data condition, figures, sample grids and the
search's efficiency. The package: ``runs`` (loading), ``comparisons`` (families, adjustment, verdicts),
``figures``, ``sections`` (``write_report`` as a list of section functions).
"""

from __future__ import annotations

import sys

from search.report.comparisons import (Comparison, Family, adjust, compared_metrics, failure_comparisons, family,
                                       imbalance_comparisons, method_comparisons, primary_comparisons)
from search.report.figures import figure, plot_per_class, plot_sigma_max
from search.report.runs import TrialRun, by_seed, configurations, efficiency_between, load_runs, trial_runs
from search.report.sections import SECTIONS, fmt, headline, importances, write_report
from search.stats import mean_ci
from trainers.cli import run_command
from trainers.config import parse_overrides
from trainers.fields import ConfigError

__all__ = ["Comparison", "Family", "SECTIONS", "TrialRun", "adjust", "by_seed", "compared_metrics", "configurations",
           "efficiency_between", "failure_comparisons", "family", "figure", "fmt", "headline", "imbalance_comparisons",
           "importances", "load_runs", "main", "mean_ci", "method_comparisons", "plot_per_class", "plot_sigma_max",
           "primary_comparisons", "trial_runs", "write_report"]


def main(argv: list[str] | None = None) -> int:
    return run_command(__doc__, _report, argv)


def _report(argv: list[str]) -> int:
    from search.spaces import load_space
    from search.stores import DEFAULT_ROOT, Stores

    args = parse_overrides(argv)
    unknown = set(args) - {"space", "root", "tracking_uri", "preset"}
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)}; valid: space, root, tracking_uri, preset")
    if "space" not in args:
        raise ConfigError("say which study: space=NAME")
    space = load_space(str(args["space"]), preset=args.get("preset"))
    stores = Stores.at(args.get("root", DEFAULT_ROOT), args.get("tracking_uri"))
    if not stores.has_study(space.name):
        raise ConfigError(f"no study '{space.name}' under root={stores.root}; run it first with "
                          f"python -m search.run space={space.name} root={stores.root}")
    print(f"report: {write_report(space, stores)}")
    return 0


if __name__ == "__main__":  # pragma: no cover - python -m search.report runs __main__.py
    sys.exit(main())
