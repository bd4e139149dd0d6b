"""The shared shape of every command: ``--help`` prints the module's doc; a ConfigError (a person's
mistake) becomes one ``error:`` line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import sys
from typing import Callable

from trainers.config import ConfigError


def run_command(doc: str | None, body: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(doc)
        return 0
    try:
        return body(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
