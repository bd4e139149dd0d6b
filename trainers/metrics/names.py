"""The names a trial reports at every evaluation: what a study may optimise.

Each name is declared where it is computed: the loop's own (``trainers.loop.REPORTED``), the method's
(``GANMethod.metric_names``: its losses' logs and diagnostics) and the evaluator's (each of its metrics
registered with the names it returns, ``trainers.metrics.scores.METRICS``, and held to them at
every evaluation); ``reported_metrics`` joins them for one config, the per-class names for every class
of the dataset (``fid_class/0`` .. ``fid_class/<K-1>``). A space whose metric is not among them is
refused before anything runs (``search.spaces``).
"""

from __future__ import annotations

from trainers.data import DATASETS
from trainers.loop import REPORTED
from trainers.methods import get_method
from trainers.metrics.scores import metric_names
from trainers.metrics.perclass import VAL_PREFIX
from trainers.settings import EvalConfig, TrainConfig

# the names that have a validation-half twin val/<name> under eval.split=val_test
VALIDATION = tuple(name for name in metric_names(EvalConfig(split="val_test"), 1, conditional=True)
                   if name.startswith(VAL_PREFIX))


def reported_metrics(cfg: TrainConfig) -> list[str]:
    """Every metric name a trial of ``cfg`` reports at each evaluation."""
    method = get_method(cfg.method)
    classes = DATASETS[cfg.dataset].num_classes
    return [*REPORTED, *method.metric_names(cfg.knobs, classes),
            *metric_names(cfg.eval, classes, method.conditional)]
