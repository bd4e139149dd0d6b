"""Random fault schedules: a hypothesis state machine drives a tiny study through starts and resumes and
stops it at random moments — SIGKILL of the driver's process group (kill -9 by a scheduler), SIGTERM
(preemption) and SIGINT (Ctrl-C). After every stop the doctor must find the stores in agreement (nothing
lost, nothing duplicated: each configuration COMPLETE at most once, one MLflow run per trial, no step
logged twice), and a configuration once COMPLETE keeps its value; at the end of each schedule the study is
resumed to its end and every configuration's value is the one an uninterrupted run of the same study
gives (trials are seeded and deterministic on the CPU).

Seeded (``derandomize``) and small: the study is two configurations of 20 steps, each schedule at most
STEPS actions, EXAMPLES schedules; measured at about 5 minutes on 2 CPU cores (see the module's test).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from test_search_e2e import ENV, PROJECT, run_cli

EXAMPLES, STEPS = 2, 4
SPACE = """
name: schedules
description: random fault schedules
metric: fid
sampler: grid
scheduler: fifo
max_concurrent: 1
seeds: 1
fixed: {{dataset: digits, ch: 4, batch_size: 32, steps: 20, eval_every: 10, eval.num_samples: 200,
        eval.judge_epochs: 15, cache_dir: {cache}}}
params:
  method: {{choice: [dcgan]}}
  imbalance: {{choice: [1, 10]}}
"""
STOPS = {"kill -9 of the group": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}
# what a stop may end with: the study done first (0), stopped as Ctrl-C (130/143), killed (-9), or the stop
# landing while it started (the same codes), never a crash (1) or a hang
EXIT_CODES = {signal.SIGKILL: {0, -9}, signal.SIGTERM: {0, 143}, signal.SIGINT: {0, 130}}


def complete_values(root: Path) -> dict[str, float]:
    import sqlite3

    if not (root / "optuna.db").exists():
        return {}
    with sqlite3.connect(root / "optuna.db") as db:
        rows = db.execute("SELECT p.param_value, v.value FROM trials t JOIN studies s USING (study_id) "
                          "JOIN trial_params p USING (trial_id) JOIN trial_values v USING (trial_id) "
                          "WHERE s.study_name = 'schedules' AND t.state = 'COMPLETE' AND p.param_name = 'imbalance'"
                          ).fetchall()
    return {str(imbalance): value for imbalance, value in rows}


def doctor(root: Path) -> tuple[int, str]:
    """search.doctor on the study, in this process (its imports are paid once)."""
    import contextlib
    import io

    from search.doctor import main as doctor_main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = doctor_main([f"space={root.parent / 'schedules.yaml'}", f"root={root}"])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """The study run once without interruption: its values, and a folder with the space and a shared cache."""
    base = tmp_path_factory.mktemp("schedules")
    (base / "schedules.yaml").write_text(SPACE.format(cache=base / "cache"))
    root = base / "reference"
    done = run_cli([f"space={base / 'schedules.yaml'}", f"root={root}", "report=false"], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    values = complete_values(root)
    assert len(values) == 2, values
    return base, values


class FaultSchedule(RuleBasedStateMachine):
    base: Path
    expected: dict[str, float]
    runs = 0

    def __init__(self):
        super().__init__()
        FaultSchedule.runs += 1
        self.root = self.base / f"root{FaultSchedule.runs}"
        self.driver: subprocess.Popen | None = None
        self.seen: dict[str, float] = {}
        self.log: list[str] = []

    def args(self) -> list[str]:
        from search.stores import Stores  # as search.run tells a new study from a stored one

        started = Stores.at(self.root).has_study("schedules") or (self.root / "ray" / "schedules").is_dir()
        return [f"space={self.base / 'schedules.yaml'}", f"root={self.root}", "report=false",
                *(["resume=true"] if started else [])]

    @precondition(lambda self: self.driver is None)
    @rule()
    def start(self):
        self.log.append("start")
        self.driver = subprocess.Popen([sys.executable, "-m", "search.run", *self.args()], cwd=PROJECT, env=ENV,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                       start_new_session=True)

    @precondition(lambda self: self.driver is not None)
    @rule(stop=st.sampled_from(sorted(STOPS)), after=st.floats(0.0, 40.0))
    def stop(self, stop, after):
        self.log.append(f"{stop} after {after:.1f} s")
        sig = STOPS[stop]
        try:
            self.driver.wait(timeout=after)  # it may end first
        except subprocess.TimeoutExpired:
            (os.killpg if sig == signal.SIGKILL else os.kill)(self.driver.pid, sig)
        try:
            _, err = self.driver.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(self.driver.pid, signal.SIGKILL)
            raise AssertionError(f"the driver did not stop within 180 s of {stop} ({self.log})")
        code, self.driver = self.driver.returncode, None
        assert code in EXIT_CODES[sig], f"{stop}: exit {code} ({self.log}): {err[-2000:]}"
        assert "Traceback" not in err, f"{stop}: a traceback ({self.log}): {err[-2000:]}"

    @invariant()
    def stores_agree_and_values_stay(self):
        if self.driver is not None or not (self.root / "optuna.db").exists():
            return
        code, out = doctor(self.root)
        assert code == 0, f"the doctor after {self.log}: {out[-3000:]}"
        values = complete_values(self.root)
        for cell, value in self.seen.items():
            assert values.get(cell) == value, f"configuration {cell} changed after {self.log}: {value} -> {values}"
        self.seen = values

    def teardown(self):
        if self.driver is not None:
            os.killpg(self.driver.pid, signal.SIGKILL)
            self.driver.wait()
        done = run_cli(self.args(), timeout=600)  # resumed to its end
        assert done.returncode == 0, f"the final resume after {self.log}: {done.stderr[-3000:]}"
        code, out = doctor(self.root)
        assert code == 0, f"the doctor after the final resume ({self.log}): {out[-3000:]}"
        assert complete_values(self.root) == self.expected, (self.log, complete_values(self.root), self.expected)


@pytest.mark.slow
def test_random_fault_schedules_lose_and_duplicate_nothing(reference):
    from hypothesis.stateful import run_state_machine_as_test

    FaultSchedule.base, FaultSchedule.expected = reference
    started = time.monotonic()
    run_state_machine_as_test(FaultSchedule, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, derandomize=True, deadline=None, database=None,
        phases=[Phase.generate],  # no shrinking: each schedule costs minutes; a failure prints its schedule
        suppress_health_check=list(HealthCheck)))
    print(f"{FaultSchedule.runs} schedules in {time.monotonic() - started:.0f} s")
