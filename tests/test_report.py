"""The study report: CI maths, groups with n, failed trials counted, figures are PNG files."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path

import optuna
import pytest

from search import tracking
from search.report import main as report_main
from search.report import mean_ci, write_report
from search.spaces import load_space
from search.stores import Stores
from store_fixtures import new_mlflow_store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_mean_ci_matches_a_hand_computation():
    values = [10.0, 12.0, 14.0, 11.0]
    mean, half, n = mean_ci(values)
    sd = statistics.stdev(values)
    t_975_df3 = 3.182446305284263  # Student t quantile, 3 degrees of freedom, from tables
    assert n == 4 and mean == pytest.approx(11.75)
    assert half == pytest.approx(t_975_df3 * sd / 2.0, rel=1e-9)
    m1, h1, n1 = mean_ci([5.0, float("nan")])  # NaN (a failed value) is not averaged in
    assert (m1, n1) == (5.0, 1) and math.isnan(h1)
    assert mean_ci([])[2] == 0


def make_study(root, space, outcomes):
    """A finished study written through the real stores: outcomes = [(sampled, seed, fid or None)]."""
    stores = Stores.at(root)
    study = optuna.create_study(study_name=space.name, storage=stores.optuna_storage(), direction="minimize")
    new_mlflow_store(stores.mlflow_db)
    client = tracking.client_for(stores.tracking_uri)
    exp = tracking.ensure_experiment(client, space.name, stores.experiment_artifact_location(space.name))
    parent = tracking.start_parent_run(client, exp, space, "")
    for i, (sampled, seed, fid) in enumerate(outcomes):
        run = client.create_run(exp, tags={"mlflow.parentRunId": parent, tracking.TAG_ROLE: "trial",
                                           tracking.TAG_TRIAL: f"t{i}", tracking.TAG_SAMPLED: json.dumps(sampled),
                                           "seed": str(seed)})
        for key, value in sampled.items():
            client.log_param(run.info.run_id, key, value)
        if fid is None:
            client.set_terminated(run.info.run_id, "FAILED")
            continue
        for step, scale in ((10, 2.0), (20, 1.0)):
            client.log_metric(run.info.run_id, "fid", fid * scale, step=step)
        for k in range(10):
            client.log_metric(run.info.run_id, f"fid_class/{k}", fid + k, step=20)
            client.log_metric(run.info.run_id, f"kid_class/{k}", fid / 10 + k if k != 3 else math.nan, step=20)
            client.log_metric(run.info.run_id, f"count_class/{k}", 10 + k, step=20)
            client.log_metric(run.info.run_id, f"prior/{k}", 0.1, step=20)
        for key in ("fid_minority", "fid_majority", "class_kl_uniform", "classes_dropped"):
            client.log_metric(run.info.run_id, key, fid / 2, step=20)
        client.set_terminated(run.info.run_id, "FINISHED")
    distributions = {"method": optuna.distributions.CategoricalDistribution(["dcgan", "damage"]),
                     "imbalance": optuna.distributions.CategoricalDistribution([1, 10]),
                     "prune_ratio": optuna.distributions.CategoricalDistribution([0.5])}
    for sampled, fid in {(tuple(s.items()), f) for s, _, f in outcomes if f is not None}:
        study.add_trial(optuna.trial.create_trial(params=dict(sampled), value=fid, distributions={
            k: distributions[k] for k in dict(sampled)}))
    return client, parent


def test_report_lists_every_group_with_n_and_counts_failures(tmp_path):
    space = load_space("smoke")
    a = {"method": "dcgan", "imbalance": 1}
    b = {"method": "damage", "prune_ratio": 0.5, "imbalance": 10}
    outcomes = [(a, 0, 10.0), (a, 1, 14.0), (a, 2, None), (b, 0, 20.0)]
    client, parent = make_study(tmp_path, space, outcomes)
    report = write_report(space, Stores.at(tmp_path))
    text = report.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| dcgan") or line.startswith("| damage")]
    assert len(rows) == 2
    dcgan = next(r for r in rows if r.startswith("| dcgan"))
    # 3 trials, 1 failed: fid over the 2 finished and the failed one at the space's penalty (the untrained
    # generator's score on digits): mean ± t(0.975, 2) * sd / sqrt(3)
    penalty = space.failure_value["fid"]
    values = [10.0, 14.0, penalty]
    half = 4.302652729911275 * statistics.stdev(values) / math.sqrt(3)
    assert "| 3 | 1 |" in dcgan and f"{statistics.mean(values):.3g} ± {half:.2g} (n=3, 1 failed at {penalty:g})" in dcgan
    assert "20 (n=1)" in next(r for r in rows if r.startswith("| damage"))
    assert "of which failed: 1; unfinished" in text and "1 failed, excluded" in dcgan  # metrics with no penalty say so
    for heading in ("## Ablation table", "## Best configurations", "## Parameter importances"):
        assert heading in text
    for name in ("per_class.png", "class_histograms.png", "learning_curves.png"):
        assert f"]({name})" in text
        assert (report.parent / name).read_bytes()[:8] == PNG_MAGIC
    logged = [a.path for a in client.list_artifacts(parent, "report")]
    assert "report/report.md" in logged
    # the parent run carries the answer: the headline as its description, a mean per configuration
    summary = client.get_run(parent).data
    assert "## Ablation table" in summary.tags["mlflow.note.content"]
    assert "Resolved after adjustment" in summary.tags["mlflow.note.content"]
    assert summary.metrics["fid/dcgan_rho1"] == pytest.approx(statistics.mean(values))  # the penalty entered
    assert summary.metrics["fid/damage_rho10_pruneratio0.5"] == pytest.approx(20.0)


def test_report_cli_refuses_a_missing_study(tmp_path, capsys):
    assert report_main(["space=smoke", f"root={tmp_path}"]) == 2
    assert "no study 'smoke'" in capsys.readouterr().err
    assert not (tmp_path / "optuna.db").exists()


def test_sigma_max_plot_has_one_panel_per_gsr_lambda(tmp_path, monkeypatch):
    from search import report

    def trial(lam, seed):
        history = {f"gsr/sigma_max/{k}": [(10, 1.0 + k * lam), (20, 1.5 + k * lam)] for k in range(3)}
        metrics = {f"prior/{k}": [0.6, 0.3, 0.1][k] for k in range(3)}
        return report.TrialRun(f"r{lam}{seed}", "FINISHED", {"gsr_lambda": str(lam)}, {}, metrics, history)

    panels = []
    real_figure = report.figures.figure

    def spy(rows=1, cols=1, **kwargs):
        panels.append(cols)
        return real_figure(rows, cols, **kwargs)

    monkeypatch.setattr(report.figures, "figure", spy)
    runs = [trial(lam, seed) for lam in (0.0, 0.5) for seed in (0, 1)]
    assert report.plot_sigma_max(runs, tmp_path / "sigma.png")
    assert panels == [2]  # gSR off and gSR on, side by side
    assert (tmp_path / "sigma.png").read_bytes()[:8] == PNG_MAGIC
    assert not report.plot_sigma_max([report.TrialRun("x", "FINISHED", {}, {}, {}, {})], tmp_path / "none.png")


def _trial(method, rho, seed, value, status="FINISHED", **sampled):
    from search.report import TrialRun

    sampled = {"method": method, **sampled, "imbalance": rho}
    return TrialRun(f"{method}{rho}{seed}", status, {}, sampled, {"kid_minority": value, "fid": 10 * value,
                                                                  "recall_minority": 1 - value / 100},
                    tags={"seed": str(seed)}, start_ms=0, end_ms=1000)


def test_methods_are_compared_with_the_baseline_paired_by_seed():
    from search.report import method_comparisons

    space = load_space("sdclr_ablation")
    base = {0: 10.0, 1: 20.0, 2: 30.0}
    other = {0: 12.0, 1: 23.0, 2: 31.0}  # per-seed differences 2, 3, 1 (in seed order, not list order)
    runs = [_trial("dcgan", 100, s, v) for s, v in base.items()]
    runs += [_trial("contrad", 100, s, v) for s, v in reversed(list(other.items()))]
    runs += [_trial("contrad", 1, 0, 99.0), _trial("dcgan", 1, 0, 1.0)]  # another imbalance: its own baseline
    rows = [c for c in method_comparisons(space, runs) if c.metric == "kid_minority"]
    context = {c.context: c.diff for c in rows}
    diff = context["imbalance=100"]
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2) * sd([2, 3, 1]) / sqrt(3)
    assert diff.paired and diff.n == 3 and diff.estimate == pytest.approx(2.0)
    assert (diff.low, diff.high) == pytest.approx((2.0 - half, 2.0 + half))
    assert context["imbalance=1"].estimate == pytest.approx(98.0) and context["imbalance=1"].n == 1
    assert not context["imbalance=1"].testable  # one pair: never resolved
    # without a failure_value a failed replicate drops its pair (and the report says so) ...
    runs[0] = _trial("dcgan", 100, 0, 10.0, status="FAILED")
    no_penalty = dataclasses.replace(space, failure_value={})
    dropped = {c.context: c.diff for c in method_comparisons(no_penalty, runs) if c.metric == "kid_minority"}
    assert dropped["imbalance=100"].n == 2
    # ... with one it enters at the penalty: differences 12 - 50, 3, 1
    penalised = dataclasses.replace(space, failure_value={"kid_minority": 50.0})
    entered = {c.context: c.diff for c in method_comparisons(penalised, runs) if c.metric == "kid_minority"}
    assert entered["imbalance=100"].n == 3
    assert entered["imbalance=100"].estimate == pytest.approx(((12 - 50) + 3 + 1) / 3)


def test_imbalance_is_compared_paired_by_seed_per_configuration_and_pooled():
    from scipy import stats

    from search.report import imbalance_comparisons

    space = load_space("sdclr_ablation")
    low, high = [1.0, 2.0, 3.0], [5.0, 7.0, 6.5]
    runs = [_trial("dcgan", 1, s, v) for s, v in enumerate(low)] + [_trial("dcgan", 100, s, v) for s, v in enumerate(high)]
    shift = [0.5, -0.2, 1.1]
    runs += [_trial("contrad", 1, s, v + 1) for s, v in enumerate(low)]
    runs += [_trial("contrad", 100, s, v + 1 + shift[s]) for s, v in enumerate(high)]
    rows = {(c.context, c.metric): c.diff for c in imbalance_comparisons(space, runs)}
    dcgan = rows[("method=dcgan", "kid_minority")]
    ci = stats.ttest_rel(high, low).confidence_interval(0.95)
    assert dcgan.paired and (dcgan.low, dcgan.high) == pytest.approx((ci.low, ci.high))
    pooled = rows[("all 2 configurations pooled", "kid_minority")]
    # the mean of the two configurations' paired effects, per seed, then a one-sample t over seeds
    per_seed = [((h - lo) + (h + s - lo)) / 2 for lo, h, s in zip(low, high, shift)]
    ci = stats.ttest_1samp(per_seed, 0.0).confidence_interval(0.95)
    assert pooled.n == 3 and (pooled.low, pooled.high) == pytest.approx((ci.low, ci.high))


def test_importances_are_fanova_and_the_same_in_every_rebuild():
    """The report's heading says fANOVA (Optuna 5's default evaluator is PED-ANOVA) and a rebuilt report must
    not reorder or change them: the forest is seeded."""
    from types import SimpleNamespace

    from search.report import importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    rng = __import__("random").Random(0)
    for _ in range(12):
        a, b, c = rng.choice([0.0, 0.5]), rng.choice([1, 10, 100]), rng.uniform(0, 1)
        study.add_trial(optuna.trial.create_trial(
            params={"a": a, "b": b, "c": c}, value=3 * a + math.log10(b) + 0.1 * c,
            distributions={"a": optuna.distributions.CategoricalDistribution([0.0, 0.5]),
                           "b": optuna.distributions.CategoricalDistribution([1, 10, 100]),
                           "c": optuna.distributions.FloatDistribution(0, 1)}))
    space = SimpleNamespace(multi_objective=False)
    first = list(importances(study, space).items())
    assert [list(importances(study, space).items()) for _ in range(3)] == [first] * 3
    fanova = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    assert first == list(fanova.items())
    assert first[-1][0] == "c"  # the parameter that barely moves the value ranks last


def test_headline_gives_the_table_the_resolved_comparisons_and_per_configuration_means():
    from search.report import headline

    space = load_space("sdclr_ablation")
    runs = [_trial(m, rho, s, 10.0 + s + (5.0 if m == "damage" else 0.0) + 0.1 * s * s)
            for m in ("dcgan", "damage") for rho in (1, 100) for s in range(4)]
    text, means = headline(space, runs)
    assert "## Ablation table" in text and "**Family**" in text and "Resolved after adjustment" in text
    assert means["kid_minority/dcgan_rho100"] == pytest.approx(statistics.mean(10.0 + s + 0.1 * s * s for s in range(4)))
    assert all("=" not in key for key in means)


def test_primary_comparison_is_tested_first_and_gates_the_rest():
    import yaml

    from search.report import family
    from search.spaces import validate_space

    raw = yaml.safe_load(open(load_space("sdclr_ablation").source))
    raw["primary"] = {"a": {"method": "contrad"}, "b": {"method": "damage"}, "metric": "kid_minority",
                      "where": {"imbalance": 100}}
    space = validate_space(raw)
    noise = [0.3, -0.2, 0.1, -0.4, 0.25, 0.0]
    runs = []
    for s in range(6):
        for rho in (1, 100):
            runs += [_trial("dcgan", rho, s, 10.0 + noise[s]), _trial("contrad", rho, s, 10.0 - noise[s]),
                     _trial("damage", rho, s, 10.0 + 2 * noise[s] + (5.0 if rho == 100 else 0.0))]
    fam = family(space, runs)
    first = fam.comparisons[0]
    assert first.primary and first.metric == "kid_minority" and first.what == "method=damage − method=contrad"
    assert first.resolved and fam.gate_open
    # the same comparison is not repeated among the secondary ones, and damage - dcgan at rho=100 resolves
    assert sum(c.key == first.key for c in fam.comparisons) == 1
    assert any(c.resolved and c.section == "methods" and c.context == "imbalance=100" for c in fam.comparisons)
    # a primary comparison that does not resolve closes the gate: nothing else is resolved
    raw["primary"]["where"] = {"imbalance": 1}
    closed = family(validate_space(raw), runs)
    assert not closed.comparisons[0].resolved and not closed.gate_open and not closed.resolved


def test_failed_replicates_enter_the_table_at_the_penalty_and_get_a_failure_comparison():
    from search.report import failure_comparisons
    from search.report.summary import cell

    space = dataclasses.replace(load_space("sdclr_ablation"), failure_value={"kid_minority": 50.0})
    members = [_trial("damage", 100, 0, 1.0), _trial("damage", 100, 1, 3.0), _trial("damage", 100, 2, 2.0, "FAILED")]
    mean, half, n = mean_ci([1.0, 3.0, 50.0])
    assert cell(space, members, "kid_minority") == f"{mean:.3g} ± {half:.2g} (n=3, 1 failed at 50)"
    no_penalty = dataclasses.replace(load_space("sdclr_ablation"), failure_value={})
    assert cell(no_penalty, members, "kid_minority").endswith("(n=2); 1 failed, excluded")
    runs = members + [_trial("dcgan", 100, s, 1.0) for s in range(3)]
    rows = failure_comparisons(space, runs)
    assert len(rows) == 1 and rows[0].metric == "failure rate" and rows[0].diff.estimate == pytest.approx(1 / 3)


def test_interrupted_replicates_are_neither_values_nor_failures():
    """A stopped study leaves its running trials KILLED (kill -9: RUNNING); a resume reruns them. Those runs
    are no evidence about the configuration: entered at the penalty they would make it look failed."""
    from search.report import failure_comparisons
    from search.report.runs import by_seed
    from search.report.summary import cell

    space = dataclasses.replace(load_space("sdclr_ablation"), failure_value={"kid_minority": 50.0})
    killed = _trial("damage", 100, 2, 9.0, "KILLED")
    rerun = _trial("damage", 100, 2, 2.0)
    members = [_trial("damage", 100, 0, 1.0), _trial("damage", 100, 1, 3.0), rerun, killed,
               _trial("damage", 100, 3, 7.0, "RUNNING")]
    # the rerun's value stands for seed 2 whichever run MLflow lists first
    assert by_seed(members, "kid_minority", 50.0) == {0: 1.0, 1: 3.0, 2: 2.0}
    assert by_seed(members[::-1], "kid_minority", 50.0) == {0: 1.0, 1: 3.0, 2: 2.0}
    mean, half, _ = mean_ci([1.0, 3.0, 2.0])
    assert cell(space, members, "kid_minority") == (f"{mean:.3g} ± {half:.2g} (n=3); 2 unfinished "
                                                    "(interrupted), excluded")
    runs = members + [_trial("dcgan", 100, s, 1.0) for s in range(4)]
    assert failure_comparisons(space, runs) == []  # no replicate failed: no failure-rate comparison


def test_best_configurations_and_importances_are_computed_within_each_imbalance():
    from search.report.ranking import best_configurations, importance_section
    from search.report.summary import Study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space("smoke")
    study = optuna.create_study()
    dist = {"method": optuna.distributions.CategoricalDistribution(["dcgan", "damage"]),
            "imbalance": optuna.distributions.CategoricalDistribution([1, 10])}
    for method, rho, value in (("dcgan", 1, 5.0), ("damage", 1, 7.0), ("dcgan", 10, 9.0), ("damage", 10, 8.0)):
        study.add_trial(optuna.trial.create_trial(params={"method": method, "imbalance": rho}, value=value,
                                                  distributions=dist))
    s = Study(space, None, [], study=study)
    text = "\n".join(best_configurations(s))
    one, ten = text.split("**imbalance=10**")
    assert "**imbalance=1**" in one and one.index("'dcgan'") < one.index("'damage'")  # 5 < 7 within rho=1
    assert ten.index("'damage'") < ten.index("'dcgan'")  # 8 < 9 within rho=10, whatever rho=1 did
    imp = "\n".join(importance_section(s))
    assert "Within each level of imbalance" in imp and imp.count("not computed: 2 complete") == 2


def test_evaluation_noise_share_is_reported_only_when_trials_log_evalsd():
    from search.report.summary import Study, evaluation_noise

    space = load_space("sdclr_ablation")
    runs = [_trial("dcgan", 1, s, v) for s, v in enumerate([1.0, 3.0, 2.0, 4.0])]
    assert evaluation_noise(Study(space, None, runs)) == []
    for r in runs:
        r.metrics["evalsd/kid_minority"] = 0.5
    rows = [line for line in evaluation_noise(Study(space, None, runs)) if line.startswith("| kid_minority")]
    share = 0.25 / statistics.variance([1.0, 3.0, 2.0, 4.0])
    assert rows == [f"| kid_minority | {share:.0%} | {1 - share:.0%} | 4 |"]


def test_calibration_benchmark_runs_the_reports_code_path(capsys):
    """benchmarks/report_calibration.py builds null studies of the main job's shape from the current space
    schema and passes them through ``family``: kept runnable (a few studies; its figures come from 2,000)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "report_calibration.py"
    spec = importlib.util.spec_from_file_location("report_calibration", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["studies=3", "seed=1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["studies"] == 3 * 6 and set(result["cells"]) >= {"n3_normal", "n6_lognormal", "n3_normal_no_failures"}
    assert 0 <= result["familywise_false_resolution"] <= result["familywise_false_resolution_unadjusted"] <= 1
    assert result["cells"]["n3_normal"]["family_size"] >= 17  # the main job's comparisons (+ failure-rate rows)
