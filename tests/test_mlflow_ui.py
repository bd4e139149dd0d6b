"""The MLflow UI, checked in a real headless Chromium: the printed link lands on the study, its trials are
nested under the parent run, and a trial's page charts the metrics and steps through the sample grids.
Screenshots are saved under test-artifacts/."""

from __future__ import annotations

import os
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


def make_store(root: Path):
    """A study as the platform writes it: a model-training experiment, the parent run, two trials named,
    tagged and logged through search.tracking (fid, fid_minority and fid_class/<k> at two steps, sample
    grids as stepped images)."""
    import numpy as np
    from PIL import Image

    space = load_space("smoke")
    stores = Stores.at(root)
    client = tracking.client_for(stores.tracking_uri)
    exp = tracking.ensure_experiment(client, space.name, stores.experiment_artifact_location(space.name))
    parent = tracking.start_parent_run(client, exp, space, "")
    runs = []
    for i, method in enumerate(("dcgan", "damage")):
        config = {"method": method, "imbalance": 10.0, "seed": 0, **({"prune_ratio": 0.5} if method == "damage" else {})}
        run = client.create_run(exp, run_name=tracking.run_name(space, config), tags={
            "mlflow.parentRunId": parent, tracking.TAG_ROLE: "trial", tracking.TAG_TRIAL: f"t{i}"})
        run_id = run.info.run_id
        client.log_param(run_id, "method", method)
        for step in (10, 20):
            for k in range(10):
                client.log_metric(run_id, f"fid_class/{k}", 10.0 + k + i + 20 / step, step=step)
            client.log_metric(run_id, "fid", 12.5 + i + 20 / step, step=step)
            client.log_metric(run_id, "fid_minority", 15.0 + i + 20 / step, step=step)
            folder = root / f"eval{i}-{step}"
            folder.mkdir()
            grid = np.random.default_rng(step).integers(0, 256, (60, 120, 3), dtype=np.uint8)
            Image.fromarray(grid).save(folder / f"samples_step{step}.png")
            tracking.log_evaluation_images(client, run_id, folder, step)
        client.set_terminated(run_id, "FINISHED")
        runs.append((run_id, tracking.run_name(space, config)))
    return exp, parent, runs


def wait_for_server(base: str, server: subprocess.Popen) -> str:
    """Wait until the UI answers; return what mlflow_server printed (its deep links)."""
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    return server.stdout.readline() + server.stdout.readline()
        except OSError:
            time.sleep(1)
    pytest.fail("mlflow_server did not come up within 120 s")


@pytest.mark.slow
def test_mlflow_ui_shows_the_study_in_a_browser(tmp_path):
    """The link mlflow_server prints lands on the study's runs (MLflow 3.17 otherwise opens its GenAI
    overview), the parent run expands into its trials, and a trial's page charts fid, fid_minority and
    fid_class/<k> and steps through its sample grids. Screenshots: test-artifacts/mlflow_*.png."""
    browser = find_or_install_chromium()
    if browser is None:
        pytest.skip("no Chromium here and it cannot be installed (needs root and apt-get)")
    root = tmp_path / "runs"
    exp, parent, runs = make_store(root)
    client = tracking.client_for(Stores.at(root).tracking_uri)
    assert client.get_experiment(exp).tags[tracking.TAG_EXPERIMENT_KIND] == tracking.MODEL_TRAINING
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow_server", f"root={root}", f"port={port}"], cwd=PROJECT,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        printed = wait_for_server(base, server)
        link = f"{base}/#/experiments/{exp}/runs?workflowType=machine_learning"
        assert f"smoke: {link}" in printed, printed
        ARTIFACTS.mkdir(exist_ok=True)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            chrome = p.chromium.launch(executable_path=browser, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                "--disable-background-networking", "--disable-component-update"])
            page = chrome.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(link)
            page.get_by_text("study:smoke").wait_for(timeout=60000)
            # the model-training view: its sidebar lists Runs and Models, not the GenAI pages
            page.get_by_role("link", name="Models").first.wait_for(timeout=30000)
            assert page.get_by_text("Token Usage").count() == 0
            # trials are nested under the study's parent run: expand it, as a person would
            page.locator('[role=row]:has-text("study:smoke") button[data-component-id*=runnamecellrenderer]').click()
            for _, name in runs:
                page.get_by_text(name, exact=True).wait_for(timeout=30000)
            page.screenshot(path=str(ARTIFACTS / "mlflow_runs.png"))

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
        for shot in ("mlflow_runs.png", "mlflow_run_metrics.png", "mlflow_run_images.png"):
            assert (ARTIFACTS / shot).read_bytes()[:4] == b"\x89PNG"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
