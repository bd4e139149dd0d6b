"""End-to-end: the real Ray Tune + Optuna + MLflow stack on the CPU (slow; CI runs them with --all)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.run import main as run_main

PROJECT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}


def optuna_states(root: Path, study: str) -> dict[str, int]:
    with sqlite3.connect(root / "optuna.db") as db:
        rows = db.execute("select t.state, count(*) from trials t join studies s on s.study_id = t.study_id "
                          "where s.study_name = ? group by t.state", (study,)).fetchall()
    return dict(rows)


def mlflow_runs(root: Path, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("ltgan.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("ltgan.role") == "trial"]
    return client, parents, children


def wait_until_complete(root: Path, study: str, proc, at_least: int = 1, timeout: float = 600) -> None:
    """Block until the study has ``at_least`` COMPLETE configurations while ``proc`` still runs."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if optuna_states(root, study).get("COMPLETE", 0) >= at_least:
                return
        except (sqlite3.OperationalError, FileNotFoundError):
            pass
        time.sleep(1)


def run_cli(args: list[str], env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.run", *args], cwd=PROJECT, env=env or ENV,
                          capture_output=True, text=True, **kwargs)


def start_cli(args: list[str]) -> subprocess.Popen:
    """``search.run`` in the background, in its own session so that signals reach only it."""
    return subprocess.Popen([sys.executable, "-m", "search.run", *args], cwd=PROJECT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.mark.slow
def test_smoke_study_end_to_end(tmp_path):
    root = tmp_path / "runs"
    proc = run_cli(["space=smoke", f"root={root}"], timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "# MLflow UI: python -m mlflow_server" in proc.stdout
    assert optuna_states(root, "smoke") == {"COMPLETE": 4}
    client, parents, children = mlflow_runs(root, "smoke")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4
    assert len({c.data.tags["ray.trial_id"] for c in children}) == 4
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert child.info.status == "FINISHED"
        metrics = child.data.metrics
        assert any(k.startswith("fid_class/") for k in metrics), sorted(metrics)
        for key in ("fid", "fid_minority", "fid_majority", "class_kl_uniform", "classes_dropped", "step"):
            assert key in metrics, key
        assert metrics["step"] == 20
        assert child.data.params["imbalance"] in ("1.0", "10.0")
        history = client.get_metric_history(child.info.run_id, "fid")
        assert [m.step for m in history] == [10, 20]
        artifacts = [a.path for a in client.list_artifacts(child.info.run_id)]
        assert "trial_config.json" in artifacts and "eval" in artifacts
        # the training split each trial saw: minority classes and counts, as tags and data.json
        minority = json.loads(child.data.tags["minority_classes"])
        counts = json.loads(child.data.tags["train_counts"])
        assert len(minority) == 5 and sorted(counts)[:5] == sorted(counts[k] for k in minority)
        if child.data.params["imbalance"] == "10.0":
            from trainers.data import class_order  # seed 0's order: its last five ranks are the minority

            order = class_order(10, 0)
            assert minority == sorted(order[5:]) and counts[order[0]] > 5 * counts[order[9]]
        assert "data.json" in artifacts
        # readable runs: named after what they are, the split as a dataset input, stepped sample grids
        method, rho = child.data.tags["method"], float(child.data.params["imbalance"])
        assert child.info.run_name == f"{method} ρ={rho:g} seed=0"
        inputs = client.get_run(child.info.run_id).inputs.dataset_inputs
        assert [i.dataset.name for i in inputs] == [f"digits-exp-ρ{rho:g}"]
        profile = json.loads(inputs[0].dataset.profile)
        assert profile["train_counts"] == counts and profile["minority_classes"] == minority
        assert [t.value for t in inputs[0].tags if t.key == "mlflow.data.context"] == ["train"]
        images = [a.path for a in client.list_artifacts(child.info.run_id, "images")]
        for key in ("samples", "class_hist"):
            steps = sorted(int(p.split("+step+")[1].split("+")[0]) for p in images
                           if p.startswith(f"images/{key}+step+") and p.endswith(".png"))
            assert steps == [10, 20], images
        assert [a.path for a in client.list_artifacts(child.info.run_id, "eval/step_000000020")] == [
            "eval/step_000000020/class_hist_step20.png", "eval/step_000000020/samples.npz",
            "eval/step_000000020/samples_step20.png"]  # samples.npz: what was scored, for trainers.evaluate
        # the shared keys and the trial's own method's knobs, never another method's
        assert ("prune_ratio" in child.data.params) == (method == "damage")
        assert ("contrastive_weight" in child.data.params) == (method == "damage")
    damage = [c for c in children if c.data.tags["method"] == "damage"]
    assert damage and all("prune/sparsity" in c.data.metrics for c in damage)
    # the report written at the end: every cell of the grid with its n, figures beside it
    report = root / "reports" / "smoke" / "report.md"
    assert f"# report: {report}" in proc.stdout
    assert "Downloading artifacts" not in proc.stdout + proc.stderr  # no progress bar per copied sample grid
    text = report.read_text()
    for cell in ("| dcgan | — | 1 | 1 | 0 |", "| dcgan | — | 10 | 1 | 0 |", "| damage | 0.5 | 1 | 1 | 0 |",
                 "| damage | 0.5 | 10 | 1 | 0 |"):
        assert cell in text, text
    assert "(n=1)" in text and (report.parent / "per_class.png").read_bytes()[:4] == b"\x89PNG"
    # how to open the runs: the serve command as code, the deep link to the runs view as a bare URL
    assert (f"`python -m mlflow_server root={root}`, then open http://127.0.0.1:5000/#/experiments/"
            in text), text
    assert f"# MLflow UI: python -m mlflow_server root={root}   then open http://127.0.0.1:5000/" in proc.stdout
    # a second start without resume=true is refused and touches nothing
    again = run_cli(["space=smoke", f"root={root}"], timeout=120)
    assert again.returncode == 2 and "resume=true" in again.stderr and "Traceback" not in again.stderr
    assert optuna_states(root, "smoke") == {"COMPLETE": 4}


@pytest.mark.slow
def test_kill_driver_then_resume_keeps_every_trial_once(tmp_path):
    root = tmp_path / "runs"
    args = ["space=smoke", f"root={root}", "max_concurrent=1", "fixed.steps=60", "fixed.eval_every=20"]
    proc = start_cli(args)
    try:
        wait_until_complete(root, "smoke", proc)  # kill once one trial finished and another is under way
        time.sleep(4)
        assert proc.poll() is None, "the study finished before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started, as on a lost node
        proc.wait()
    time.sleep(2)
    before = optuna_states(root, "smoke")
    assert before.get("COMPLETE", 0) >= 1

    resumed = run_cli(args + ["resume=true"], timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert optuna_states(root, "smoke") == {"COMPLETE": 4} or (
        optuna_states(root, "smoke").get("COMPLETE") == 4 and "RUNNING" not in optuna_states(root, "smoke"))
    _, parents, children = mlflow_runs(root, "smoke")
    assert len(parents) == 1
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert len(finished) == 4
    trial_ids = [c.data.tags["ray.trial_id"] for c in children]
    assert len(trial_ids) == len(set(trial_ids)), "a trial was logged into two MLflow runs"
    assert not [c for c in children if c.info.status == "RUNNING"]
    cells = sorted((c.data.params["method"], c.data.params["imbalance"]) for c in finished)
    assert len(set(cells)) == 4, f"a configuration ran twice: {cells}"


def test_bad_inputs_exit_2_without_touching_stores(tmp_path, capsys):
    root = tmp_path / "runs"
    assert run_main(["space=nope", f"root={root}"]) == 2
    assert "available" in capsys.readouterr().err
    assert run_main(["space=smoke", f"root={root}", "resume=true"]) == 2
    err = capsys.readouterr().err
    assert "no study 'smoke'" in err and "drop resume=true" in err
    assert run_main(["space=smoke", f"root={root}", "fixed.imbalance=0"]) == 2
    assert "imbalance" in capsys.readouterr().err
    assert run_main(["space=smoke", f"root={root}", "num_samples=0"]) == 2
    assert run_main([f"root={root}"]) == 2
    assert "space=NAME" in capsys.readouterr().err
    # a fixed knob none of the space's methods reads: one line naming the key and the methods
    space = tmp_path / "dcgan_only.yaml"
    space.write_text((PROJECT / "spaces" / "smoke.yaml").read_text().replace("[dcgan, damage]", "[dcgan]")
                     .replace("  prune_ratio: {choice: [0.5], when: {method: damage}}\n", "")
                     .replace("fixed:\n", "fixed:\n  prune_ratio: 0.5\n"))
    assert run_main([f"space={space}", f"root={root}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {space}: prune_ratio is read by none of this space's methods (dcgan); drop it"], err
    assert not (root / "mlflow.db").exists() and not (root / "optuna.db").exists()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_study_runs_on_an_existing_ray_cluster(tmp_path):
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = free_port()
    # Ray's token auth; the token goes to $HOME/.ray for both sides, so HOME is the test's own folder
    home = tmp_path / "home"
    home.mkdir()
    env = {**ENV, "RAY_AUTH_MODE": "token", "HOME": str(home)}
    # a fresh HOME has no token: make one the documented way (`ray get-auth-token --generate`)
    gen = subprocess.run([ray_cli, "get-auth-token", "--generate"], env=env, capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0 and (home / ".ray" / "auth_token").is_file(), gen.stderr[-2000:]
    start = subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                            "--disable-usage-stats", "--object-store-memory=100000000",
                            "--node-ip-address=127.0.0.1"], env=env, capture_output=True, text=True, timeout=120)
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        root = tmp_path / "runs"
        proc = run_cli(["space=smoke", f"root={root}", f"ray_address=127.0.0.1:{port}", "num_samples=2"],
                       env=env, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert optuna_states(root, "smoke") == {"COMPLETE": 2}
        _, parents, children = mlflow_runs(root, "smoke")
        assert len(parents) == 1 and len([c for c in children if c.info.status == "FINISHED"]) == 2
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.mark.slow
def test_reduced_main_job_reports_every_cell_with_its_n_and_the_comparisons(tmp_path):
    """The README's main job at a tiny size (2 seeds, 20 steps): the report has every cell with its n, the
    paired method and imbalance comparisons in one adjusted family, the sample grids and the efficiency."""
    root = tmp_path / "runs"
    proc = run_cli(["space=sdclr_ablation", f"root={root}", "seeds=[0,1]", "fixed.steps=20", "fixed.eval_every=10",
                    "fixed.ch=4", "fixed.eval.num_samples=200", "fixed.eval.per_class_n=20",
                    "fixed.eval.judge_epochs=3"], timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert optuna_states(root, "sdclr_ablation") == {"COMPLETE": 6}
    text = (root / "reports" / "sdclr_ablation" / "report.md").read_text()
    table = text.split("## Ablation table", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| dcgan") or line.startswith("| contrad")
            or line.startswith("| damage")]
    assert len(rows) == 6
    for row in rows:  # every metric cell of every configuration carries its n
        cells = row.strip("|").split("|")[4:]
        assert cells and all("(n=2)" in cell for cell in cells), row
    for section in ("## Comparisons, adjusted for multiplicity", "### Primary comparisons (declared in the space)",
                    "### Methods against the baseline, paired by seed", "### The effect of imbalance, paired by seed",
                    "## Sample grids", "## Search efficiency"):
        assert section in text, section
    # two seeds never resolve anything: every comparison says it is untestable instead of giving a t interval
    assert "(n=2: fewer than 3 pairs, untestable)" in text
    assert "per_class_n" in text
    assert "kid_minority" in text and "recall_minority" in text
    assert len(list((root / "reports" / "sdclr_ablation").glob("samples_*.png"))) == 6
