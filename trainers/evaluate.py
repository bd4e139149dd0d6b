"""Score the samples of any generator with a trial's metrics:

    python -m trainers.evaluate dataset=digits images=samples.npz [imbalance=100 imbalance_profile=exp ...]

``images=`` is an ``.npz`` holding ``images``: uint8 in [0, 255], N x H x W x C (C = 1 or 3, the
dataset's channels) or N x H x W, at the dataset's resolution; and optionally ``labels``: int class of
each image, for a conditional generator (classes then come from the labels, not the judge). Every
evaluation of a trial saves such a file (``samples.npz`` in the checkpoint's ``artifacts/``); this
command on it gives the trial's numbers at that step.

The scoring is a trial's: the same cached judge, reference statistics and metric names. The first
``eval.num_samples`` images are the overall set (fid, kid, class histogram); every class is scored on
its first ``eval.per_class_n`` images, and a class with fewer is missing (there is no generator to
ask for more: give more images). The keys that define the training split (``imbalance``,
``imbalance_profile``, ``n_max``, ``class_order``, ``class_order_seed``, ``seed`` (the class order is
the seed's by default), ``num_minority``) set the prior and the minority/majority classes exactly as in
a trial with those settings (``data_seed`` is accepted so that
a trial's keys can be pasted as they are: it picks which images a trial trains on, not how many, so
it changes neither); ``eval.*``,
``resolution``, ``data_root``, ``download``, ``root`` (the store root: the judge cache is
``<root>/cache``, default ``runs``, as for a study), ``cache_dir`` (the cache itself) and ``device`` are
accepted too. One JSON object goes to stdout (NaN as null); a bad file or key is one ``error:``
line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import math
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np

from trainers.cli import nan_as_null, root_and_cache, run_command
from trainers.config import make_config, parse_overrides
from trainers.fields import ConfigError, one_line

ACCEPTED = ("dataset", "data_root", "download", "resolution", "imbalance", "imbalance_profile", "n_max",
            "class_order", "class_order_seed", "seed", "num_minority", "data_seed", "cache_dir", "device", "eval")
CONVERT_FLOATS = "((x + 1) * 127.5).round().clip(0, 255).astype(np.uint8) for [-1, 1] (x * 255 for [0, 1])"


def main(argv: list[str] | None = None) -> int:
    return run_command(__doc__, _evaluate, argv)


def _evaluate(argv: list[str]) -> int:
    overrides = parse_overrides(argv)
    path = overrides.pop("images", None)
    if path is None:
        raise ConfigError("give the samples to score as images=PATH.npz (see --help for its layout)")
    root_and_cache(overrides)  # root= leaves the overrides here; cache_dir= stays, checked
    for key in overrides:
        if key not in ACCEPTED:
            raise ConfigError(f"key '{key}' does not apply to trainers.evaluate (it scores samples, it trains "
                              f"nothing); accepted: images, root, {', '.join(ACCEPTED[:-1])}, eval.*")
    cfg = make_config(overrides)
    from trainers.data import load_data

    data = load_data(cfg)
    images, labels, draws = read_samples(Path(str(path)), data, cfg.eval.num_samples)

    import torch

    from trainers.loop import resolve_device
    from trainers.metrics import make_evaluator

    evaluator = make_evaluator(cfg, data, resolve_device(cfg.device))
    metrics = evaluator.metrics_for(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
                                    torch.from_numpy(labels) if labels is not None else None, draws)
    print(json.dumps(nan_as_null(metrics)))
    return 0


MAX_ARRAY_BYTES = 4 * 1024 ** 3  # one array's declared size, checked before it is decompressed


def read_arrays(path: Path, where: str, wanted: tuple[str, ...]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The ``wanted`` arrays of an .npz (and the names of all it holds), each read only after its header's
    shape and dtype were checked against MAX_ARRAY_BYTES: an .npz is a zip, and a small file can declare
    (or decompress to) far more than memory holds; the arrays not wanted are never decompressed."""
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive:
        members = {name[:-4]: name for name in archive.namelist() if name.endswith(".npy")}
        for name in wanted:
            if name not in members:
                continue
            with archive.open(members[name]) as f:
                version = np.lib.format.read_magic(f)
                fmt = np.lib.format
                shape, _, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
                size = math.prod(shape) * dtype.itemsize
                if size > MAX_ARRAY_BYTES:
                    raise ConfigError(f"{where}: '{name}' declares shape {shape} of {dtype} "
                                      f"({size / 1024 ** 3:.3g} GiB), over the {MAX_ARRAY_BYTES / 1024 ** 3:g} GiB "
                                      f"this command reads; give fewer images")
            with archive.open(members[name]) as f:
                arrays[name] = np.lib.format.read_array(f, allow_pickle=False)
    return arrays, sorted(members)


def read_samples(path: Path, data, num_samples: int) -> tuple[np.ndarray, np.ndarray | None, int | None]:
    """(uint8 N x H x W x C images, int64 labels or None, draws or None) of a samples file, checked
    against the dataset; every problem is a one-line ConfigError saying what to change."""
    where = f"images={path}"
    if not path.is_file():
        raise ConfigError(f"{where}: no such file; give the path of an .npz holding an 'images' array")
    try:
        arrays, held = read_arrays(path, where, ("images", "labels", "draws"))
    except ConfigError:  # an array larger than the bound, said as such
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        reason = one_line(e)[:120]
        raise ConfigError(f"{where} cannot be read as an .npz of plain arrays ({type(e).__name__}: {reason}); "
                          f"save it with np.savez(path, images=..., labels=...)") from None
    if "images" not in arrays:
        raise ConfigError(f"{where} holds no 'images' array (it holds: {', '.join(held) or 'nothing'}); "
                          f"save it with np.savez(path, images=uint8 N x H x W x C)")
    images = arrays["images"]
    if images.dtype != np.uint8:
        span = (f" in [{float(images.min()):.3g}, {float(images.max()):.3g}]"
                if images.size and np.issubdtype(images.dtype, np.number) else "")
        raise ConfigError(f"{where}: images are {images.dtype}{span}, not uint8 in [0, 255]; convert with "
                          f"{CONVERT_FLOATS}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        hint = (" (it looks like N x C x H x W: use x.transpose(0, 2, 3, 1))"
                if images.ndim == 4 and images.shape[1] in (1, 3) else "")
        raise ConfigError(f"{where}: images have shape {tuple(arrays['images'].shape)}, not N x H x W x C with "
                          f"C = 1 or 3 (or N x H x W){hint}")
    n, h, w, c = images.shape
    if n == 0:
        raise ConfigError(f"{where} holds no images")
    if c != data.channels:
        raise ConfigError(f"{where}: images have {c} channel(s) but {data.name} has {data.channels}; "
                          f"give {data.channels}-channel images")
    if (h, w) != (data.resolution, data.resolution):
        raise ConfigError(f"{where}: images are {h}x{w} but {data.name} is evaluated at "
                          f"{data.resolution}x{data.resolution}; resize them, or pass resolution={h} "
                          f"(the judge and the reference are then made at {h}x{h})")
    if int(images.max()) <= 1:
        raise ConfigError(f"{where}: every pixel is 0 or 1: these look like [0, 1] images cast to uint8 "
                          f"(all but black); multiply by 255 before the cast")
    labels = arrays.get("labels")
    if labels is not None:
        if labels.ndim != 1 or len(labels) != n:
            raise ConfigError(f"{where}: labels have shape {tuple(labels.shape)}, expected ({n},): one class "
                              f"per image")
        if not np.issubdtype(labels.dtype, np.integer):
            raise ConfigError(f"{where}: labels are {labels.dtype}, not integers; save them as "
                              f"labels.astype(np.int64)")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= data.num_classes:
            bad = high if high >= data.num_classes else low
            raise ConfigError(f"{where}: labels hold class {bad} but {data.name} has {data.num_classes} classes "
                              f"(0..{data.num_classes - 1})")
        labels = labels.astype(np.int64)
    draws = arrays.get("draws")
    if draws is not None:
        if draws.shape != () or not np.issubdtype(draws.dtype, np.integer) or int(draws) < n:
            raise ConfigError(f"{where}: 'draws' must be one integer >= the {n} images (how many images the "
                              f"generator was asked for); drop it to count the images")
        draws = int(draws)
    if n < num_samples:
        raise ConfigError(f"{where} holds {n} images, fewer than eval.num_samples = {num_samples} (the overall "
                          f"set fid and kid are computed on, as in a trial); pass eval.num_samples={n} or "
                          f"give more images")
    return np.ascontiguousarray(images), labels, draws


if __name__ == "__main__":
    sys.exit(main())
