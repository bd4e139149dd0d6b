"""The MLflow UI, checked in a real headless Chromium: the study's trials are listed and a run's page
shows the per-class FID metrics. Screenshots are saved under test-artifacts/."""

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
    space = load_space("smoke")
    stores = Stores.at(root)
    client = tracking.client_for(stores.tracking_uri)
    exp = tracking.ensure_experiment(client, space.name, stores.experiment_artifact_location(space.name))
    parent = tracking.start_parent_run(client, exp, space, "")
    runs = []
    for i, method in enumerate(("dcgan", "damage")):
        run = client.create_run(exp, run_name=f"{method}-trial{i}", tags={
            "mlflow.parentRunId": parent, tracking.TAG_ROLE: "trial", tracking.TAG_TRIAL: f"t{i}"})
        client.log_param(run.info.run_id, "method", method)
        for k in range(10):
            client.log_metric(run.info.run_id, f"fid_class/{k}", 10.0 + k + i, step=20)
        client.log_metric(run.info.run_id, "fid", 12.5 + i, step=20)
        client.set_terminated(run.info.run_id, "FINISHED")
        runs.append(run.info.run_id)
    return exp, parent, runs


@pytest.mark.slow
def test_mlflow_ui_shows_the_study_in_a_browser(tmp_path):
    browser = find_or_install_chromium()
    if browser is None:
        pytest.skip("no Chromium here and it cannot be installed (needs root and apt-get)")
    root = tmp_path / "runs"
    exp, parent, runs = make_store(root)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow_server", f"root={root}", f"port={port}"], cwd=PROJECT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
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
        ARTIFACTS.mkdir(exist_ok=True)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            chrome = p.chromium.launch(executable_path=browser, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                "--disable-background-networking", "--disable-component-update"])
            page = chrome.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{base}/#/experiments/{exp}/runs")
            page.get_by_text("study:smoke").wait_for(timeout=60000)
            # trials are nested under the study's parent run: expand it, as a person would
            page.locator('[role=row]:has-text("study:smoke") button[data-component-id*=runnamecellrenderer]').click()
            page.get_by_text("dcgan-trial0").wait_for(timeout=30000)
            page.get_by_text("damage-trial1").wait_for(timeout=30000)
            page.screenshot(path=str(ARTIFACTS / "mlflow_runs.png"))
            page.goto(f"{base}/#/experiments/{exp}/runs/{runs[0]}")
            page.get_by_text("fid_class/0", exact=True).wait_for(timeout=60000)
            page.get_by_text("fid_class/9", exact=True).wait_for(timeout=30000)
            page.screenshot(path=str(ARTIFACTS / "mlflow_run_page.png"), full_page=True)
            chrome.close()
        assert (ARTIFACTS / "mlflow_run_page.png").read_bytes()[:4] == b"\x89PNG"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
