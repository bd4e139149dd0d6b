"""A study being run by ``search.run``: what the driver holds of it, and the error that refuses it (exit 2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from search.stores import Stores
from trainers.fields import ConfigError


class StudyError(ConfigError):
    pass


@dataclass
class Study:
    """A study being run: its space and stores, how to resume it, and its MLflow experiment and parent
    run once they exist."""

    space: Any
    stores: Stores
    resume_cmd: str
    experiment_id: str | None = None
    parent_run_id: str | None = None
