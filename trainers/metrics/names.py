"""The names a trial reports at every evaluation, declared once: what a study may optimise.

``reported_metrics(cfg)`` is the loop's names, the method's own (``GANMethod.metric_names``: its
losses' logs and diagnostics) and the evaluator's, with the per-class names for every class of the
dataset (``fid_class/0`` .. ``fid_class/<K-1>``). A space whose metric is not among them is refused
before anything runs (``search.spaces``); ``tests/test_metric_names.py`` checks this list against what
a real training run with a real evaluation reports, for every method, so a name added to the loop,
a method or the evaluator without being declared here fails that test.
"""

from __future__ import annotations

from trainers.data import NUM_CLASSES
from trainers.methods import get_method
from trainers.settings import TrainConfig

LOOP = ("step", "epoch", "time/step_s", "time/eval_s", "loss/d", "loss/g")  # trainers.loop, every report
EVALUATION = ("fid", "kid", "fid_n", "per_class_n", "samples_drawn", "draws_cap",
              "fid_minority", "fid_majority", "kid_minority", "kid_majority", "precision_minority",
              "precision_majority", "recall_minority", "recall_majority", "minority_missing", "majority_missing",
              "class_kl_uniform", "class_kl_prior", "classes_dropped", "judge/confidence", "judge/confident_rate",
              "judge/test_accuracy")  # trainers.metrics.evaluator
GROUPS = tuple(f"{name}_{group}" for name in ("fid", "kid", "precision", "recall") for group in ("minority", "majority"))
FLOORS = ("fid_floor_minority", "fid_floor_majority")  # FID of real vs real at the same N, beside fid_<group>
EVAL_SD = tuple(f"evalsd/{name}" for name in ("fid", *GROUPS))  # sd over the reference draws
VALIDATION = tuple(f"val/{name}" for name in ("fid", "kid", *GROUPS, "minority_missing", "majority_missing"))
# each as <name>/<k>, k < the class count
PER_CLASS = ("fid_class", "kid_class", "precision_class", "recall_class", "scored_class", "count_class",
             "judged_class", "prior", "fid_floor_class")
INCEPTION_ONLY = ("is",)  # eval.features=inception
CONDITIONAL_ONLY = ("judge/conditional_accuracy",)  # methods whose G takes class labels


def reported_metrics(cfg: TrainConfig) -> list[str]:
    """Every metric name a trial of ``cfg`` reports at each evaluation."""
    method = get_method(cfg.method)
    classes = NUM_CLASSES[cfg.dataset]
    names = [*LOOP, *method.metric_names(cfg.knobs, classes), *EVALUATION, *FLOORS, *EVAL_SD]
    if cfg.eval.split == "val_test":
        names += VALIDATION
    names += [f"{name}/{k}" for name in PER_CLASS for k in range(classes)]
    if cfg.eval.features == "inception":
        names += INCEPTION_ONLY
    if method.conditional:
        names += CONDITIONAL_ONLY
    return names
