"""The default locations every command reads (relative to the working directory).

They live in ``trainers`` because the trainer needs them without the search stack (``trainers`` imports
nothing of ``search``); ``search.stores``, the map of a study's stores, re-exports them.
"""

DEFAULT_ROOT = "runs"  # root=: every store of a study, the trainer's default cache under it
CACHE_FOLDER = "cache"  # <root>/cache: the trainer's cache_dir (judge, reference statistics, datasets' arrays)
DEFAULT_DATA_ROOT = "data"  # the trainer's data_root: where torchvision datasets live
