"""How a study is stopped from outside, and what Ray needs so that such a stop and its resume stay clean.

- SIGTERM (a scheduler's preemption, ``docker stop``, ``kill``) and SIGHUP (a closed terminal) stop the
  study as Ctrl-C does: the driver turns them into SIGINT, which Ray Tune's handler turns into a graceful
  stop (trials checkpoint, the experiment state is saved); the exit code is 128 + the signal.
- The local Ray's processes run in a session of their own, so a signal to the driver's process group
  reaches the driver only, which then shuts Ray down itself.
- A watcher process stops Ray's processes when the driver dies, kill -9 of its PID alone included (Ray's
  fate sharing stopped the GCS and the raylet but left the raylet's agents running).
- Ray's checkpoint rotation tolerates a checkpoint already deleted (a trial that rotated after the last
  experiment snapshot, then an interruption): without it a clean resume logs an ERROR and a traceback.
- Ray saves the experiment state only after its previous upload of that state has finished: the stop's
  forced save otherwise renamed a file under a running upload, which failed with an ERROR and a traceback.
- Ray's own lines at a stop that would mislead are dropped: its resume hint (``Tuner.restore(...)``, not
  how a study resumes) and its list of trials with no result yet; the driver's last line says both.

The three changes to how Ray works replace a private name each (Ray has no public option for any); the
dropped lines are filtered by logger name and message start. Each is applied once, in the driver only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

# SIGTERM (a scheduler's preemption, docker stop, kill) and SIGHUP (a closed terminal) stop a study as
# Ctrl-C does; the signals received, for the exit code (128 + the first one)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_RECEIVED: list[int] = []


def _stop_as_ctrl_c(signum, frame) -> None:
    """Turn a stop signal into SIGINT to this process: inside Tuner.fit Ray's handler stops the run
    gracefully (trials checkpoint, state saved), anywhere else Python raises KeyboardInterrupt."""
    _RECEIVED.append(signum)
    signal.raise_signal(signal.SIGINT)


def quit_while_importing() -> None:
    """Until ``main`` runs: SIGINT, SIGTERM or SIGHUP end the command at once, in one line (nothing is
    written during the imports), with exit code 128 + the signal."""
    def quit_now(signum, frame):
        print(f"error: interrupted by {signal.Signals(signum).name} while starting; nothing was written: run "
              f"the same command again", file=sys.stderr, flush=True)
        os._exit(128 + signum)

    for sig in (signal.SIGINT, *STOP_SIGNALS):
        signal.signal(sig, quit_now)


def _interrupt_again_if_swallowed(unraisable) -> None:
    """``sys.unraisablehook``: a KeyboardInterrupt raised while Python ran a garbage-collection callback or
    a ``__del__`` (SQLAlchemy's and MLflow's run during a study's setup) cannot propagate: Python prints
    it as "Exception ignored" and goes on, and the stop was lost (a SIGTERM 8 s into a study let it run
    to its end, with a traceback on stderr). SIGINT is sent again to the main thread from a timer thread
    50 ms later, once the callback and this hook have returned (sent at once, it landed in this hook and
    was lost again); landing in another callback, it comes back here and is sent again. Anything else goes
    to the default hook."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        import threading

        # a real SIGINT to the main thread: it also cuts short a blocking call there (interrupt_main only
        # sets Python's flag, which a sleep or a lock wait would not see until it returned)
        main = threading.main_thread().ident
        again = threading.Timer(0.05, signal.pthread_kill, (main, signal.SIGINT))
        again.daemon = True
        try:
            again.start()
        except RuntimeError:  # the interpreter is shutting down: it is stopping anyway
            pass
        return
    sys.__unraisablehook__(unraisable)


def handle_stop_signals() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop_as_ctrl_c)
    sys.unraisablehook = _interrupt_again_if_swallowed


@contextlib.contextmanager
def stop_signals_held():
    """SIGTERM/SIGHUP held (blocked) while Ray starts: ray.init installs Ray's C++ SIGTERM handler (a stack
    dump, then abort) in the driver, and a signal in that window aborted the driver. After it, ours are
    installed again and a held signal is delivered to them. Ray's processes unblock them (below)."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        handle_stop_signals()
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def interrupted_status() -> tuple[str, int]:
    """(what interrupted the driver, its exit code): Ctrl-C 130, SIGTERM 143, SIGHUP 129."""
    if _RECEIVED:
        return signal.Signals(_RECEIVED[0]).name, 128 + _RECEIVED[0]
    return "Ctrl-C", 130


def ray_processes_in_their_own_session() -> None:
    """The local Ray's processes (GCS, raylet and the workers they start) in a session of their own, so
    that a scheduler's SIGTERM to the driver's process group reaches the driver only: the driver stops
    the study as after Ctrl-C and shuts Ray down itself. (Otherwise the GCS dies at once and the driver
    hangs a minute, then aborts, leaving its MLflow parent RUNNING.) They still die with the driver:
    Ray starts them with PR_SET_PDEATHSIG. Ray has no public option for this; its one Popen class is
    replaced by a subclass that asks for a new session."""
    from ray._private import services

    popen = services.ConsolePopen
    if getattr(popen, "own_session", False) or sys.platform == "win32":
        return

    class OwnSessionPopen(popen):
        own_session = True
        started: list[int] = []  # the process groups it made (each process leads its own)

        def __init__(self, *args, **kwargs):
            kwargs.setdefault("start_new_session", True)
            ray_preexec = kwargs.get("preexec_fn")

            def preexec():  # in the child: Ray's own setup, then the stop signals the driver holds let through
                if ray_preexec is not None:
                    ray_preexec()
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

            kwargs["preexec_fn"] = preexec
            super().__init__(*args, **kwargs)
            OwnSessionPopen.started.append(self.pid)

    services.ConsolePopen = OwnSessionPopen


# Run by the watcher: blocks on its stdin, a pipe whose write end only the driver holds; end of file means
# the driver is gone (or exited). Then the process groups named on its command line are stopped: SIGTERM,
# and SIGKILL to what is left after a grace period. Plain Python, no imports of the project.
WATCHER = """
import os, signal, sys, time
sys.stdin.buffer.read()
groups = [int(g) for g in sys.argv[1:]]
def signal_groups(sig):
    sent = 0
    for g in groups:
        try:
            os.killpg(g, sig)
            sent += 1
        except OSError:
            pass
    return sent
if signal_groups(signal.SIGTERM):
    deadline = time.monotonic() + 3.0
    while signal_groups(0) and time.monotonic() < deadline:
        time.sleep(0.1)
    signal_groups(signal.SIGKILL)
"""
_WATCHER: list = []  # the watcher's Popen: its stdin pipe stays open for as long as this driver lives


def ray_processes_die_with_the_driver() -> None:
    """After the local Ray started: a watcher process, in a session of its own, that stops the process
    groups of Ray's processes (the GCS, the raylet with the agents and workers it starts, the log monitor)
    when the driver dies in any way, kill -9 of its PID alone included. Ray's own fate sharing
    (PR_SET_PDEATHSIG) stops the GCS and the raylet, but not the raylet's agents: ray::DashboardAgent and
    ray::RuntimeEnvAgent noticed their raylet gone and then waited on the dead GCS, left running (about
    180 MB). The watcher learns of the death from a pipe only the driver holds (closed by the kernel at
    the driver's exit), so it needs no polling and no PID that could be reused."""
    import subprocess

    from ray._private import services

    groups = getattr(services.ConsolePopen, "started", [])
    if not groups or _WATCHER or sys.platform == "win32":
        return
    _WATCHER.append(subprocess.Popen([sys.executable, "-c", WATCHER, *map(str, groups)], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))


def tolerate_deleted_checkpoints() -> None:
    """Ray's checkpoint manager deletes the oldest checkpoint beyond ``num_to_keep`` through a helper that
    raises FileNotFoundError when it is gone already; after an interruption the restored bookkeeping can
    name one the trial deleted after Ray's last snapshot. Deleting what is gone is then a no-op."""
    from ray.train._internal import checkpoint_manager, storage

    if getattr(checkpoint_manager._delete_fs_path, "tolerant", False):
        return

    def delete_if_present(fs, fs_path: str) -> None:
        if storage._exists_at_fs_path(fs, fs_path):
            storage._delete_fs_path(fs=fs, fs_path=fs_path)

    delete_if_present.tolerant = True
    checkpoint_manager._delete_fs_path = delete_if_present


def save_state_after_its_last_upload() -> None:
    """Ray Tune saves the experiment state into its staging folder and then uploads that folder in a
    background thread to ``storage_path``. A forced save (a stop, Ctrl-C or SIGTERM) wrote the searcher
    state's temporary file and renamed it while the previous upload was still listing and copying the
    folder, so that upload failed (FileNotFoundError on the temporary file) and Ray logged an ERROR with a
    traceback. The next upload, which Ray waits for, copied the whole state, so nothing was lost, but a
    researcher saw a traceback on a clean stop. Waiting for the running upload before saving leaves it
    nothing to race; a real failure of that upload is logged as Ray logs it."""
    import logging

    from ray.tune.execution import experiment_state

    manager = experiment_state._ExperimentCheckpointManager
    as_shipped = manager.sync_up_experiment_state
    if getattr(as_shipped, "waits_for_upload", False):
        return

    def sync_up_experiment_state(self, save_fn, force: bool = False, wait: bool = False) -> None:
        def save_after_upload() -> None:
            syncer = getattr(self._storage, "syncer", None)
            if syncer is not None:
                try:
                    syncer.wait()
                except Exception:
                    logging.getLogger(experiment_state.__name__).error(
                        f"Saving experiment state to storage at '{self._storage.experiment_fs_path}' failed "
                        f"with exception: ", exc_info=True)
            save_fn()

        as_shipped(self, save_after_upload, force=force, wait=wait)

    sync_up_experiment_state.waits_for_upload = True
    manager.sync_up_experiment_state = sync_up_experiment_state


# Ray's lines at a stop that the driver's last line replaces (logger name, the message's start)
RAY_STOP_HINTS = (("ray.tune.tune", "Experiment has been interrupted"),
                  ("ray.tune.tune", "Training has been interrupted"),
                  ("ray.tune.analysis.experiment_analysis", "Failed to fetch metrics for"))


def drop_ray_stop_hints() -> None:
    """At a stop Ray logs "Resume experiment with: Tuner.restore(path=..., trainable=...)", which is not how
    a study resumes (the driver's last line gives the command), and lists the trials that had reported no
    result yet (the driver's last line counts the configurations left unfinished, its summary the failed
    trials). Both are dropped, and only they."""
    import logging

    for name, start in RAY_STOP_HINTS:
        logger = logging.getLogger(name)
        if any(getattr(f, "ray_stop_hint", None) == start for f in logger.filters):
            continue

        def keep(record: logging.LogRecord, start: str = start) -> bool:
            return not str(record.msg).startswith(start)

        hint = logging.Filter()
        hint.filter = keep
        hint.ray_stop_hint = start
        logger.addFilter(hint)
