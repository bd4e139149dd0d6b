"""The MLflow UI, checked in a real headless Chromium: the printed link lands on the study, its trials are
nested under the parent run, and a trial's page charts the metrics and steps through the sample grids.
Screenshots are saved under test-artifacts/."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from search import tracking
from search.spaces import load_space
from search.stores import Stores
from store_fixtures import new_mlflow_store

PROJECT = Path(__file__).resolve().parent.parent
ARTIFACTS = PROJECT / "test-artifacts"


def find_or_install_chromium() -> str | None:
    """Debian's chromium; installed with apt-get at run time (never at import) when missing."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, timeout=1200)
    return shutil.which("chromium")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeTrial:
    """What the MLflow callback reads of a Ray trial."""

    def __init__(self, trial_id: str, config: dict):
        self.trial_id, self.config, self.error_file = trial_id, config, None


def make_store(root: Path):
    """A study as the platform writes it, through its own code: search.tracking starts the experiment and
    the parent run (and stores the study's runs view), search.callback.MLflowTrialCallback turns each
    trial's reports and checkpoints into its child run — the smoke space's four configurations x two
    seeds, each reporting fid, kid_minority, recall_minority, the missing counts and fid_class/<k> at two
    evaluations, with a sample grid per evaluation — and the parent gets a summary (set_parent_summary)."""
    import numpy as np
    from PIL import Image
    from ray.train import Checkpoint

    from search.callback import MLflowTrialCallback

    space = load_space("smoke")
    stores = Stores.at(root)
    client = tracking.client_for(stores.tracking_uri)
    exp = tracking.ensure_experiment(client, space.name, stores.experiment_artifact_location(space.name))
    parent = tracking.start_parent_run(client, exp, space, "")
    callback = MLflowTrialCallback(stores.tracking_uri, exp, parent, space)
    runs = []
    for c, sampled in enumerate(space.grid()):
        for seed in (0, 1):
            trial = FakeTrial(f"t{c}{seed}", space.trial_config(sampled, seed))
            callback.on_trial_start(0, [], trial)
            for step in (10, 20):
                result = {"step": step, "fid": 30.0 - step / 2 + c + seed,
                          "kid_minority": 0.1 * c + 0.01 * seed + 1 / step, "recall_minority": 0.5 - 0.05 * c,
                          "fid_minority": 40.0 - step + c, "minority_missing": c % 2, "majority_missing": 0,
                          "classes_dropped": c % 2, **{f"fid_class/{k}": 10.0 + k + c for k in range(10)}}
                callback.on_trial_result(0, [], trial, result)
                folder = root / "ckpt" / trial.trial_id / str(step)
                (folder / "artifacts").mkdir(parents=True)
                (folder / "metrics.json").write_text(json.dumps({"step": step}))
                grid = np.random.default_rng(step + c).integers(0, 256, (60, 120, 3), dtype=np.uint8)
                Image.fromarray(grid).save(folder / "artifacts" / f"samples_step{step}.png")
                callback.on_checkpoint(0, [], trial, Checkpoint.from_directory(str(folder)))
            callback.on_trial_complete(0, [], trial)
            runs.append((callback.run_id(trial), tracking.run_name(space, trial.config)))
    tracking.set_parent_summary(client, parent, SUMMARY, {
        "kid_minority/dcgan ρ=1": 0.05, "kid_minority/damage p=0.5 ρ=1": 0.15})
    return exp, parent, runs


SUMMARY = """## Ablation: kid_minority, mean over 2 seeds

| configuration | kid_minority | 95% interval |
|---|---|---|
| dcgan ρ=1 | 0.055 | [0.050, 0.060] |
| damage p=0.5 ρ=1 | 0.155 | [0.150, 0.160] |

**Resolved:** damage p=0.5 is worse than dcgan at ρ=1 (+0.100, paired by seed).
"""


def wait_for_server(base: str, server: subprocess.Popen) -> str:
    """Wait until the UI answers; return what mlflow_server printed (its deep links)."""
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(1)
    else:
        pytest.fail("mlflow_server did not come up within 120 s")
    # its header line and the study's link, past whatever MLflow's own server printed to the same stdout
    lines = []
    while len(lines) < 40 and not (lines and lines[-1].startswith("  ")):
        lines.append(server.stdout.readline())
    return "".join(lines)


@pytest.mark.slow
def test_mlflow_ui_shows_the_study_in_a_browser(tmp_path):
    """The link mlflow_server prints opens, with no click, on the study's comparison in the model-training
    view (MLflow 3.17 otherwise opens its GenAI overview): one row per configuration (the mean over its
    seeds) with its trials beneath, the columns kid_minority and fid on screen; its chart view charts the
    compared metrics against step, one line per configuration; the parent run's page shows the summary;
    a trial's page charts fid, fid_minority and fid_class/<k> and steps through its sample grids.
    Screenshots: test-artifacts/mlflow_*.png."""
    browser = find_or_install_chromium()
    if browser is None:
        pytest.skip("no Chromium here and it cannot be installed (needs root and apt-get)")
    root = tmp_path / "runs"
    exp, parent, runs = make_store(root)
    client = tracking.client_for(Stores.at(root).tracking_uri)
    client.set_terminated(parent, "FINISHED")
    assert client.get_experiment(exp).tags[tracking.TAG_EXPERIMENT_KIND] == tracking.MODEL_TRAINING
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow_server", f"root={root}", f"port={port}"], cwd=PROJECT,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        printed = wait_for_server(base, server)
        link = tracking.runs_view_url(base, exp)
        assert f"smoke: {link}" in printed, printed
        ARTIFACTS.mkdir(exist_ok=True)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            chrome = p.chromium.launch(executable_path=browser, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                "--disable-background-networking", "--disable-component-update"])
            page = chrome.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(link)
            # no click from here to the screenshot: every trial is a row, under its configuration's row
            try:
                for _, name in runs:
                    page.get_by_text(name, exact=True).wait_for(timeout=60000)
                groups = page.locator("[role=row]", has_text="Group: method: ")
                assert groups.count() == 4, groups.all_inner_texts()  # the smoke grid's 4 configurations
                # the model-training view: its sidebar lists Runs and Models, not the GenAI pages
                page.get_by_role("link", name="Models").first.wait_for(timeout=30000)
                assert page.get_by_text("Token Usage").count() == 0
                for metric in ("kid_minority", "fid", "recall_minority"):
                    header = page.locator(f'[role=columnheader][col-id="metrics.`{metric}`"]')
                    assert header.is_visible() and header.inner_text().strip() == metric
                # the parent run, outside every group, is a row too: its metrics hold the summary's figures
                page.get_by_text("study:smoke", exact=True).wait_for(timeout=30000)
            finally:
                page.screenshot(path=str(ARTIFACTS / "mlflow_runs.png"))

            page.goto(link.replace("compareRunsMode=TABLE", "compareRunsMode=CHART"))
            try:  # the view's own section, filtered to the compared metrics, one line per configuration
                page.get_by_text("Study metrics").first.wait_for(timeout=60000)
                for metric in ("kid_minority", "fid", "recall_minority"):
                    page.locator("[data-testid=experiment-view-compare-runs-chart-area]").get_by_text(
                        metric, exact=True).first.wait_for(timeout=30000)
                assert page.get_by_text("fid_class/0").count() == 0
                # drawn: a configuration's line in a legend (the mean over its seeds, the range as a band)
                area = page.locator("[data-testid=experiment-view-compare-runs-chart-area]")
                area.get_by_text("method: damage, imbalance: 10.0").first.wait_for(timeout=60000)
                area.locator(".js-plotly-plot").nth(2).wait_for(timeout=30000)  # plotly drew the first row
            finally:
                page.screenshot(path=str(ARTIFACTS / "mlflow_charts.png"))

            page.goto(f"{base}/#/experiments/{exp}/runs/{parent}?workflowType=machine_learning")
            try:  # the parent's description is the report's headline, rendered as Markdown
                page.get_by_text("Ablation: kid_minority, mean over 2 seeds").wait_for(timeout=60000)
                page.locator("table", has_text="damage p=0.5 ρ=1").first.wait_for(timeout=30000)
            finally:
                page.screenshot(path=str(ARTIFACTS / "mlflow_parent.png"))

            run_id, name = runs[1]
            page.goto(f"{base}/#/experiments/{exp}/runs/{run_id}/model-metrics?workflowType=machine_learning")
            page.get_by_text(name).first.wait_for(timeout=60000)
            search = page.get_by_placeholder("Search metric charts")
            try:
                search.fill("fid_minority")
                page.get_by_text("fid_minority").first.wait_for(timeout=30000)
                search.fill("fid")
                page.get_by_text(f"{name} (fid_class/0)").first.wait_for(timeout=30000)
            finally:
                page.screenshot(path=str(ARTIFACTS / "mlflow_run_metrics.png"))
            search.fill("samples")
            # the image chart opens at step 0; move its slider to the last evaluation
            handle = page.locator("[role=slider]").first
            handle.wait_for(timeout=30000)
            track = handle.locator("xpath=../..").bounding_box()  # the slider's root, its track end to end
            page.mouse.click(track["x"] + track["width"] - 2, track["y"] + track["height"] / 2)
            image = page.locator("img[src*='samples']").first
            image.wait_for(timeout=30000)
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(),
                                   timeout=30000)
            page.screenshot(path=str(ARTIFACTS / "mlflow_run_images.png"))
            chrome.close()
        for shot in ("mlflow_runs.png", "mlflow_charts.png", "mlflow_parent.png", "mlflow_run_metrics.png",
                     "mlflow_run_images.png"):
            assert (ARTIFACTS / shot).read_bytes()[:4] == b"\x89PNG"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def test_the_printed_link_names_the_stored_view(tmp_path):
    """start_parent_run stores the study's runs view as MLflow's saved-view envelope under the key the printed
    link names (no search facet in the link: with one there MLflow ignores the view); it groups by the
    parameters that differ between configurations and shows the compared metrics; mlflow_server gives a
    study stored without one the same view, from what its runs record."""
    from mlflow_server.__main__ import studies
    from search import runs_view

    root = tmp_path / "runs"
    space = load_space("smoke")
    stores = Stores.at(root)
    new_mlflow_store(stores.mlflow_db)
    client = tracking.client_for(stores.tracking_uri)
    exp = tracking.ensure_experiment(client, space.name, stores.experiment_artifact_location(space.name))
    parent = tracking.start_parent_run(client, exp, space, "")
    for sampled in space.grid():  # the tag search.callback gives each trial's run
        client.create_run(exp, tags={"mlflow.parentRunId": parent, tracking.TAG_SAMPLED: json.dumps(sampled)})
    link = tracking.runs_view_url("http://127.0.0.1:5000", exp)
    assert f"viewStateShareKey={runs_view.VIEW_KEY}" in link and "workflowType=machine_learning" in link
    assert not any(f"{facet}=" in link for facet in ("searchFilter", "orderByKey", "orderByAsc", "startTime"))
    envelope = json.loads(client.get_experiment(exp).tags[runs_view.VIEW_TAG_PREFIX + runs_view.VIEW_KEY])
    assert envelope["name"] == "study: smoke" and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    assert [k["groupByData"] for k in state["groupBy"]["groupByKeys"]] == ["method", "imbalance"]
    for column in ("metrics.`fid`", "metrics.`kid_minority`", "metrics.`recall_minority`",
                   "metrics.`minority_missing`", "params.`method`", "params.`imbalance`", "params.`seed`"):
        assert column in state["selectedColumns"]
    assert state["orderByKey"] == "metrics.`fid`" and state["orderByAsc"] is True  # smoke: fid, min
    shown = re.compile(state["chartsSearchFilter"], re.IGNORECASE)
    assert shown.search("kid_minority") and not shown.search("fid_class/0") and not shown.search("kid")
    assert {c["metricKey"] for c in state["compareRunCharts"]} >= {"fid", "kid_minority", "recall_minority"}

    client.delete_experiment_tag(exp, runs_view.VIEW_TAG)
    assert studies(Stores.at(root)) == [("smoke", exp)]
    again = json.loads(json.loads(client.get_experiment(exp).tags[runs_view.VIEW_TAG])["state"])
    assert again["groupBy"] == state["groupBy"] and again["selectedColumns"] == state["selectedColumns"]


def test_parent_summary_takes_keys_mlflow_refuses(tmp_path):
    """set_parent_summary logs one metric per configuration under a key MLflow accepts (it refuses '=', ','
    ...), read back from a real store; two keys that would become one are refused; the description is the
    markdown, cut under MLflow's limit with a pointer to the full report."""
    from mlflow.exceptions import MlflowException

    stores = Stores.at(tmp_path / "runs")
    new_mlflow_store(stores.mlflow_db)
    client = tracking.client_for(stores.tracking_uri)
    run_id = client.create_run(client.create_experiment("summary")).info.run_id
    with pytest.raises(MlflowException):  # the reason for metric_key
        client.log_metric(run_id, "kid_minority/dcgan ρ=100", 0.5)
    metrics = {"kid_minority/dcgan ρ=100": 0.25, "kid_minority/damage p=0.9,ρ=100": 0.5,
               "recall_minority/contrad ρ=1": float("nan")}
    tracking.set_parent_summary(client, run_id, SUMMARY, metrics)
    run = client.get_run(run_id)
    assert run.data.tags["mlflow.note.content"] == SUMMARY
    assert run.data.metrics["kid_minority/dcgan_ρ100"] == 0.25
    assert run.data.metrics["kid_minority/damage_p0.9_ρ100"] == 0.5
    assert math.isnan(run.data.metrics["recall_minority/contrad_ρ1"])
    assert len(run.data.metrics) == 3
    with pytest.raises(ValueError, match="both become"):
        tracking.set_parent_summary(client, run_id, "x", {"fid/a=b": 1.0, "fid/ab": 2.0})
    long = "| row | 1 |\n" * 2000
    tracking.set_parent_summary(client, run_id, long, {})
    note = client.get_run(run_id).data.tags["mlflow.note.content"]
    assert len(note) <= tracking.NOTE_LIMIT and note.endswith("`report/` artifact)") and "| row | 1 |\n| row" in note
