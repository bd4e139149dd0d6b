"""How a study is stopped from outside, and what Ray needs so that such a stop and its resume stay clean.

- SIGTERM (a scheduler's preemption, ``docker stop``, ``kill``) and SIGHUP (a closed terminal) stop the
  study as Ctrl-C does: the driver turns them into SIGINT, which Ray Tune's handler turns into a graceful
  stop (trials checkpoint, the experiment state is saved); the exit code is 128 + the signal.
- The local Ray's processes run in a session of their own, so a signal to the driver's process group
  reaches the driver only, which then shuts Ray down itself.
- Ray's checkpoint rotation tolerates a checkpoint already deleted (a trial that rotated after the last
  experiment snapshot, then an interruption): without it a clean resume logs an ERROR and a traceback.

The two Ray adjustments replace a private name each (Ray has no public option for either); each is
applied once, in the driver only.
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


def handle_stop_signals() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop_as_ctrl_c)


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

        def __init__(self, *args, **kwargs):
            kwargs.setdefault("start_new_session", True)
            ray_preexec = kwargs.get("preexec_fn")

            def preexec():  # in the child: Ray's own setup, then the stop signals the driver holds let through
                if ray_preexec is not None:
                    ray_preexec()
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

            kwargs["preexec_fn"] = preexec
            super().__init__(*args, **kwargs)

    services.ConsolePopen = OwnSessionPopen


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
