"""Search spaces: a YAML file -> a validated, frozen ``Space`` -> Optuna suggestions -> trial configs.

A space file (see README "Spaces") names the study, its metric(s) and mode(s), the sampler and
scheduler, how many configurations to sample and how many seed replicates each gets, the trainer
settings that stay fixed, and the parameters with their distributions and conditions::

    params:
      method: {choice: [dcgan, contrad, damage]}
      prune_ratio: {choice: [0.5, 0.9], when: {method: damage}}
      contrastive_weight: {loguniform: [0.1, 10], when: {method: [contrad, damage]}}

A parameter's ``when`` may only name parameters defined above it. A method's knob (fixed, searched or
set by a preset) reaches only the methods that read it; one that none of the space's methods reads is
refused. Method and dataset names are checked against the trainer's registries, nowhere listed here.

Presets are named overlays kept in one shared file, ``spaces/presets.yaml``: an entry is either an
overlay of space keys (``fixed``, ``resources``, ``max_concurrent``, ...) or a list of other entries,
applied in order. A space's ``presets:`` section maps its own names to shared ones
(``cifar10_gpu: contrad_cifar10_gpu``); ``preset=NAME`` takes one of those or any shared name.

The public import path of the space code, which lives in one module per job: ``search.space_model``
(the model), ``search.space_load`` (files and presets), ``search.space_checks`` and
``search.space_validate`` (validation and the metric-name diagnostics).
"""

from search.space_checks import PRIMARY_EXAMPLE, PRIMARY_KEYS, SEQUENTIAL_EXAMPLE
from search.space_load import (MAX_YAML_BYTES, MAX_YAML_NODES, PRESETS_FILE, SPACES_DIR, available_spaces,
                               load_space, merge, preset_layers, read_yaml, resolve_space_path, shared_presets)
from search.space_model import (CHOICE_TYPES, DEFAULT_METHOD, DEFAULT_NUM_SAMPLES, DISTRIBUTIONS,
                                MAX_CHECKED_CONFIGS, MAX_GRID_CELLS, MAX_SEEDS, NAME_PATTERN, PRESET_KEYS,
                                SAMPLERS, SCHEDULERS, SEED_RANGE, TOP_KEYS, Param, SequentialSeeds, Space,
                                SpaceError, expand, knob_readers)
from search.space_validate import validate_space

__all__ = [
    "CHOICE_TYPES", "DEFAULT_METHOD", "DEFAULT_NUM_SAMPLES", "DISTRIBUTIONS", "MAX_CHECKED_CONFIGS",
    "MAX_GRID_CELLS", "MAX_SEEDS", "MAX_YAML_BYTES", "MAX_YAML_NODES", "NAME_PATTERN", "PRESETS_FILE",
    "PRESET_KEYS", "PRIMARY_EXAMPLE", "PRIMARY_KEYS", "SAMPLERS", "SCHEDULERS", "SEED_RANGE",
    "SEQUENTIAL_EXAMPLE", "SPACES_DIR", "TOP_KEYS", "Param", "SequentialSeeds", "Space", "SpaceError",
    "available_spaces", "expand", "knob_readers", "load_space", "merge", "preset_layers", "read_yaml",
    "resolve_space_path", "shared_presets", "validate_space",
]
