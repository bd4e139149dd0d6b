"""Serve the MLflow UI over the project's store:  python -m mlflow_server [root=runs] [port=5000]

Binds 127.0.0.1 unless ``host=`` says otherwise. Exposing it (host=0.0.0.0) lets anyone who can
reach the port read and delete every run: put it behind an authenticating proxy or an SSH tunnel.
"""

from __future__ import annotations

import os
import shlex
import signal
import shutil
import subprocess
import sys
from pathlib import Path

from search.stores import DEFAULT_ROOT, Stores
from trainers.cli import directory_arg, run_command
from trainers.config import parse_overrides
from trainers.fields import ConfigError

KEYS = ("root", "port", "host", "workers")


def build_command(stores: Stores, host: str, port: int, workers: int) -> list[str]:
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    base = [mlflow] if mlflow else [sys.executable, "-m", "mlflow"]
    return base + [
        "server", "--backend-store-uri", stores.tracking_uri, "--default-artifact-root", stores.artifacts_uri,
        "--host", host, "--port", str(port), "--workers", str(workers),
    ]


def parse(argv: list[str]) -> tuple[Stores, str, int, int]:
    args = parse_overrides(argv)
    for key in args:
        if key not in KEYS:
            raise ConfigError(f"unknown key '{key}'; valid: {', '.join(KEYS)} (e.g. root=runs port=5000)")
    stores = Stores.at(directory_arg("root", args.get("root", DEFAULT_ROOT)))
    port = args.get("port", 5000)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"port={port!r} must be an integer in 1..65535")
    workers = args.get("workers", 1)
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers={workers!r} must be a positive integer")
    if not stores.mlflow_db.is_file():
        first = shlex.join(["python", "-m", "search.run", "space=smoke", f"root={stores.root}"])
        raise ConfigError(f"no MLflow store at {stores.mlflow_db}; run a study first ({first}) or pass root= of an "
                          f"existing one")
    host = args.get("host", "127.0.0.1")
    if not isinstance(host, str) or not host.strip():
        raise ConfigError(f"host={host!r} must be an address to bind (127.0.0.1, or 0.0.0.0 to expose the UI)")
    port_free(host, port)
    return stores, host, port, workers


def port_free(host: str, port: int) -> None:
    """Refuse a port another program listens on (the links printed would open that program's pages)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise ConfigError(f"host={host}: cannot be resolved ({e.strerror or e}); give an address such as "
                          f"127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds it
        try:
            probe.bind(address)
        except OSError as e:
            raise ConfigError(f"port={port} on {host} cannot be used ({e.strerror or e}); another program (another "
                              f"UI?) listens there: pass another port=") from None


def serving(process, host: str, port: int, timeout_s: float = 120.0) -> bool:
    """Wait until the server accepts connections (True), or exits first (False)."""
    import socket
    import time

    target = "127.0.0.1" if host in ("0.0.0.0", "localhost") else ("::1" if host == "::" else host)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection((target, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.3)
    return process.poll() is None


def studies(stores: Stores) -> list[tuple[str, str]]:
    """(name, experiment id) of every study in the store, newest first. A study written before the
    printed link opened on a stored view gets that view now, from what its runs record (else the link
    would name a view the UI cannot find)."""
    from search import runs_view
    from search.tracking import client_for, find_parent_run

    client = client_for(stores.tracking_uri)
    found = []
    for experiment in client.search_experiments(order_by=["creation_time DESC"]):
        if experiment.name == "Default":
            continue
        if runs_view.VIEW_TAG not in experiment.tags:
            parent = find_parent_run(client, experiment.experiment_id, experiment.name)
            if parent is not None:
                runs_view.set_study_view(client, experiment.experiment_id, f"study: {experiment.name}",
                                         *runs_view.view_from_store(client, experiment.experiment_id, parent))
        found.append((experiment.name, experiment.experiment_id))
    return found


def _stop(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    return run_command(__doc__, serve, argv)


def serve(argv: list[str]) -> int:
    stores, host, port, workers = parse(argv)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {host}: anyone who can reach port {port} can read and delete runs",
              file=sys.stderr)
    from search.tracking import runs_view_url

    base = f"http://{'127.0.0.1' if host in ('127.0.0.1', 'localhost') else host}:{port}"
    found = studies(stores)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    process = subprocess.Popen(build_command(stores, host, port, workers), env=env)
    signal.signal(signal.SIGTERM, _stop)  # stopped by a scheduler or kill: the server goes with it
    try:
        if not serving(process, host, port):  # the links only once they lead to this store's UI
            code = process.wait()
            print(f"error: the MLflow server did not start on {host}:{port} (exit {code}; its output is above)",
                  file=sys.stderr)
            return code or 1
        print(f"MLflow UI for {stores.root}: {base}", flush=True)
        for name, experiment_id in found:  # each study's runs table, in the model-training view
            print(f"  {name}: {runs_view_url(base, experiment_id)}", flush=True)
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait()
        return 0


if __name__ == "__main__":
    sys.exit(main())
