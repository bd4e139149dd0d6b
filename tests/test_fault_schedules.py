"""Random fault schedules: a hypothesis state machine drives a tiny study through starts and resumes and
stops it at random moments — SIGKILL of the driver's process group (kill -9 by a scheduler), SIGTERM
(preemption) and SIGINT (Ctrl-C). After every stop the doctor must find the stores in agreement (nothing
lost, nothing duplicated: each configuration COMPLETE at most once, one MLflow run per trial, no step
logged twice), and a configuration once COMPLETE keeps its value; at the end of each schedule the study is
resumed to its end and every configuration's value is the one an uninterrupted run of the same study
gives (trials are seeded and deterministic on the CPU).

Seeded (``derandomize``) and small: the study is two configurations of 20 steps, each schedule at most
STEPS actions, each stop one of STOP_AT; EXAMPLES = 3 makes hypothesis draw about five distinct schedules
(it also runs partial and repeated ones, which cost nothing here), each then resumed to its end. A schedule
that would begin after BUDGET_S is left out and named (a slow machine). Measured: see the test's output.
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
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from test_search_e2e import ENV, PROJECT, run_cli

EXAMPLES, STEPS = 3, 4
BUDGET_S = 360  # schedules that would start later are left out (said in the output)
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
# (stop, seconds after a start): trials run from about 20 s to 40 s after a start, Ray starts before, the
# imports in the first seconds; interleaved so that the few schedules drawn meet every kind of stop (the
# first schedule hypothesis draws is the simplest: the first entry twice)
STOP_AT = [("SIGINT", 25.0), ("kill -9 of the group", 2.0), ("SIGTERM", 32.0), ("kill -9 of the group", 12.0),
           ("SIGTERM", 20.0), ("kill -9 of the group", 28.0), ("SIGTERM", 8.0), ("SIGINT", 2.0),
           ("kill -9 of the group", 36.0)]
# what a stop may end with: the study done first (0), stopped as Ctrl-C (128 + the signal), or killed by the
# signal itself (-signal: SIGKILL, or a signal in the milliseconds before the interpreter installs its handlers,
# when nothing is written yet; a shell shows that as 128 + the signal too); never a crash (1) or a hang
EXIT_CODES = {sig: {0, 128 + sig, -sig} for sig in STOPS.values()}


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
    """Draws a schedule (start, then stops and restarts at random moments) and runs it on a fresh root. Rules
    record the schedule; the teardown runs it for real, checking the stores after every stop, then resumes the
    study to its end. (Hypothesis also runs partial and repeated examples it does not count: running each
    distinct schedule once, at the end of its example, keeps the cost to the schedules themselves.)"""

    base: Path
    expected: dict[str, float]
    done: set[tuple] = set()
    left_out: set[tuple] = set()
    started_at = 0.0

    def __init__(self):
        super().__init__()
        self.schedule: list[tuple] = []
        self.running = False

    @initialize()
    def first_start(self):
        self.schedule.append(("start",))
        self.running = True

    @precondition(lambda self: not self.running)
    @rule()
    def start(self):
        self.schedule.append(("start",))
        self.running = True

    @precondition(lambda self: self.running)
    @rule(stop_at=st.sampled_from(STOP_AT))
    def stop(self, stop_at):
        self.schedule.append(("stop", *stop_at))
        self.running = False

    def teardown(self):
        key = tuple(self.schedule)
        if not any(step[0] == "stop" for step in key) or key in FaultSchedule.done:
            return  # nothing but the final resume, or run already
        if time.monotonic() - FaultSchedule.started_at > BUDGET_S:
            FaultSchedule.left_out.add(key)  # the time budget is spent (a slow machine): said at the end
            return
        FaultSchedule.done.add(key)
        Run(self.base / f"root{len(FaultSchedule.done)}", self.base, self.expected).play(self.schedule)


class Run:
    """One schedule played on the real stack."""

    def __init__(self, root: Path, base: Path, expected: dict[str, float]):
        self.root, self.base, self.expected = root, base, expected
        self.driver: subprocess.Popen | None = None
        self.seen: dict[str, float] = {}
        self.log: list[str] = []

    def args(self) -> list[str]:
        from search.stores import Stores  # as search.run tells a new study from a stored one

        started = Stores.at(self.root).has_study("schedules") or (self.root / "ray" / "schedules").is_dir()
        return [f"space={self.base / 'schedules.yaml'}", f"root={self.root}", "report=false",
                *(["resume=true"] if started else [])]

    def play(self, schedule: list[tuple]) -> None:
        try:
            for step in schedule:
                if step[0] == "start":
                    self.start()
                else:
                    self.stop(*step[1:])
                    self.stores_agree_and_values_stay()
        finally:
            if self.driver is not None:
                os.killpg(self.driver.pid, signal.SIGKILL)
                self.driver.wait()
        done = run_cli(self.args(), timeout=600)  # resumed to its end
        assert done.returncode == 0, f"the final resume after {self.log}: {done.stderr[-3000:]}"
        code, out = doctor(self.root)
        assert code == 0, f"the doctor after the final resume ({self.log}): {out[-3000:]}"
        assert complete_values(self.root) == self.expected, (self.log, complete_values(self.root), self.expected)
        print(f"schedule {self.root.name}: {', '.join(self.log)}; then resumed to its end: the stores agree, "
              f"values as uninterrupted", flush=True)

    def start(self):
        self.log.append("start")
        self.driver = subprocess.Popen([sys.executable, "-m", "search.run", *self.args()], cwd=PROJECT, env=ENV,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                       start_new_session=True)

    def stop(self, stop: str, after: float):
        self.log.append(f"{stop} after {after:g} s")
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
        self.log[-1] += f" (exit {code})"
        assert code in EXIT_CODES[sig], f"{stop}: exit {code} ({self.log}): {err[-2000:]}"
        assert "Traceback" not in err, f"{stop}: a traceback ({self.log}): {err[-2000:]}"

    def stores_agree_and_values_stay(self):
        if not (self.root / "optuna.db").exists():
            return
        code, out = doctor(self.root)
        assert code == 0, f"the doctor after {self.log}: {out[-3000:]}"
        values = complete_values(self.root)
        for cell, value in self.seen.items():
            assert values.get(cell) == value, f"configuration {cell} changed after {self.log}: {value} -> {values}"
        assert all(self.expected[cell] == value for cell, value in values.items()), (self.log, values)
        self.seen = values


@pytest.mark.slow
def test_random_fault_schedules_lose_and_duplicate_nothing(reference):
    from hypothesis.stateful import run_state_machine_as_test

    FaultSchedule.base, FaultSchedule.expected = reference
    FaultSchedule.started_at = time.monotonic()
    run_state_machine_as_test(FaultSchedule, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, derandomize=True, deadline=None, database=None,
        phases=[Phase.generate],  # no shrinking: each schedule costs a minute or two; a failure names its schedule
        suppress_health_check=list(HealthCheck)), _min_steps=2)
    print(f"{len(FaultSchedule.done)} schedules in {time.monotonic() - FaultSchedule.started_at:.0f} s; "
          f"{len(FaultSchedule.left_out)} left out (time budget {BUDGET_S} s): {sorted(FaultSchedule.left_out)}")
    assert FaultSchedule.done, "no schedule ran"
