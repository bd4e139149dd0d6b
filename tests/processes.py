"""The processes a test's study started, read from /proc: for tests that kill a driver and must know that
what it started (Ray's GCS, raylet, agents, the trial workers) is gone before they touch its files."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process, from /proc."""
    rows = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            rows[int(d.name)] = (int(stat[stat.rindex(")") + 2:].split()[1]), cmd)
    return rows


def descendants(rows: dict[int, tuple[int, str]], pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        children = {p for p, (ppid, _) in rows.items() if ppid == parent and p not in out}
        out |= children
        todo.extend(children)
    return out


def kill_9_and_wait(proc, timeout: float = 30) -> dict[int, str]:
    """kill -9 of the driver's process group, then wait until every process it had started is gone (Ray's
    processes run in sessions of their own and are stopped by the watcher a few seconds later; a trial
    worker left running still writes into its trial folder). Returns what was still running at the
    deadline (then killed), for the caller to assert on."""
    kids = descendants(process_table(), proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    deadline = time.time() + timeout
    while time.time() < deadline and kids & set(process_table()):
        time.sleep(0.2)
    rows = process_table()
    left = {p: rows[p][1][:80] for p in kids if p in rows}
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    return left
