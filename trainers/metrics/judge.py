"""The judge: a small CNN classifier trained once on the dataset's full balanced training split.

It labels generated images (per-class FID of unconditional models, the class histogram) and is the
offline/CPU feature space of FID and KID. It is cached under ``<root>/cache/judge-<hash>.pt``, the
hash covering the data (train and test images and labels, resolution, channels, classes) and the
judge's own config, so every trial of a study shares one judge and a different dataset never reuses
it. ``judge_extractor.JudgeFeatureExtractor`` exposes it to torch-fidelity (``ltgan-judge``); this module
is plain torch, so processes that only train or load the judge do not import torch-fidelity.

Features: the judge's penultimate layer is a **32-dimensional linear bottleneck** that the class head
reads. Per-class FID on digits compares ~36 real test images a class; with 32 dimensions their
covariance is still full-rank (a 2048-d Inception or even a 64-d layer would be rank-deficient and
the per-class FID would mostly measure that). The bottleneck has no ReLU so no unit is dead and
every dimension carries variance; it is rescaled once after training to unit mean square on the
training images (the scale KID's cubic kernel expects). Training uses its own seeded RNG and one
thread, both restored afterwards. Measured on one core of a loaded machine (15 epochs, width 32):
digits 16x16 ~2 s, >= 0.95 balanced test accuracy; mnist 32x32 ~13 s and 16x16 ~5 s, >= 0.97
(figures in docs/pilot.md).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trainers.data import DataBundle, to_float
from trainers.metrics.cache import digest, load_or_compute

JUDGE_VERSION = 4  # bump when the architecture or the training recipe changes: old caches are ignored
MIN_CONVS = 4  # conv layers of the body at least, whatever the resolution (v4: 16x16 gained a 4x4 conv)
FEATURE_DIM = 32
BATCH_SIZE = 128
LEARNING_RATE = 5e-3


class JudgeNet(nn.Module):
    """Strided 3x3 convs (BatchNorm, ReLU) down to 4x4, then stride-1 convs at 4x4 up to
    ``MIN_CONVS`` convs in all (at least one), global pooling, then the 32-d feature bottleneck and
    the class head. Widths ``w, 2w, 4w, 4w, ...``. At 32x32 that is 3 strided convs + 1; at 16x16,
    2 + 2: with a single 4x4 conv the 16x16 MNIST judge sat at 0.968-0.975 balanced test accuracy
    over three training seeds, with two at 0.974-0.978 (docs/pilot.md)."""

    def __init__(self, channels: int, num_classes: int, width: int, resolution: int):
        super().__init__()
        layers: list[nn.Module] = []
        size, in_ch, out_ch = resolution, channels, width
        while True:
            layers += [nn.Conv2d(in_ch, out_ch, 3, 2, 1), nn.BatchNorm2d(out_ch), nn.ReLU()]
            size, in_ch = (size + 1) // 2, out_ch
            out_ch = min(2 * out_ch, 4 * width)
            if size <= 4:
                break
        strided = sum(isinstance(m, nn.Conv2d) for m in layers)
        for _ in range(max(1, MIN_CONVS - strided)):
            layers += [nn.Conv2d(in_ch, in_ch, 3, 1, 1), nn.BatchNorm2d(in_ch), nn.ReLU()]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_ch, FEATURE_DIM)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(FEATURE_DIM, num_classes)
        # set after training so the features have unit mean square on the training data (the scale
        # of Inception's pool features), which KID's cubic kernel (x.y / d + 1)^3 assumes
        self.register_buffer("feature_scale", torch.ones(()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bottleneck = self.body(x)
        return bottleneck * self.feature_scale, self.head(bottleneck)


def judge_path(data: DataBundle, cache_dir: Path, width: int, epochs: int) -> Path:
    key = digest(JUDGE_VERSION, data.name, data.resolution, data.channels, data.num_classes, width, epochs,
                 data.full_train.images, data.full_train.labels, data.test.images, data.test.labels)
    return Path(cache_dir) / f"judge-{key}.pt"


@contextlib.contextmanager
def _isolated(device: torch.device):
    """The judge's own RNG and one intra-op thread, both restored afterwards.

    The trainer's global RNG stream is untouched, so training and resume stay bit-exact whether or not
    this trial trained the judge. One thread: convs this small do not scale across threads, and when
    parallel trials share the CPU the spin-waiting of a multi-threaded pool costs ~10x.
    """
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        if device.type == "cpu":
            torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


@torch.no_grad()
def balanced_accuracy(net: JudgeNet, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                      device: torch.device, batch: int = 512) -> float:
    """Mean over classes of the per-class recall (the plain accuracy when the split is balanced)."""
    net.eval()
    pred = torch.cat([net(to_float(images[s:s + batch]).to(device))[1].argmax(1).cpu()
                      for s in range(0, len(images), batch)])
    recalls = [float((pred[labels == c] == c).float().mean()) for c in range(num_classes) if (labels == c).any()]
    return sum(recalls) / max(1, len(recalls))


def train_judge(data: DataBundle, width: int, epochs: int, device: torch.device) -> dict:
    """Train on ``data.full_train`` (Adam, one-cycle schedule, +-1 pixel random shifts); the payload
    to cache, with its balanced accuracy on ``data.test``."""
    started = time.perf_counter()
    with _isolated(device):
        net = JudgeNet(data.channels, data.num_classes, width, data.resolution).to(device)
        images, labels = data.full_train.images, data.full_train.labels
        batch = min(BATCH_SIZE, len(labels))
        steps_per_epoch = len(labels) // batch
        opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LEARNING_RATE, total_steps=epochs * steps_per_epoch)
        gen = torch.Generator().manual_seed(0)
        net.train()
        for _ in range(epochs):
            order = torch.randperm(len(labels), generator=gen)
            for i in range(steps_per_epoch):
                idx = order[i * batch:(i + 1) * batch]
                x = to_float(images[idx]).to(device)
                # small random shifts: generated images are less precisely placed than real ones
                shift = torch.randint(-1, 2, (2,), generator=gen).tolist()
                x = torch.roll(x, shifts=shift, dims=(2, 3))
                loss = F.cross_entropy(net(x)[1], labels[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        accuracy = balanced_accuracy(net, data.test.images, data.test.labels, data.num_classes, device)
        with torch.no_grad():
            square = sum(float(net(to_float(images[s:s + 512]).to(device))[0].square().sum())
                         for s in range(0, len(images), 512))
            net.feature_scale.fill_((square / (len(images) * FEATURE_DIM)) ** -0.5)
    return {"state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "test_accuracy": accuracy, "train_seconds": time.perf_counter() - started,
            "channels": data.channels, "num_classes": data.num_classes, "width": width,
            "resolution": data.resolution, "version": JUDGE_VERSION}


def load_or_train_judge(data: DataBundle, cache_dir: Path, width: int, epochs: int,
                        device: torch.device) -> tuple[Path, dict, bool]:
    """(path of the cached judge, its payload, whether this call trained it). Trains at most once
    across concurrent processes sharing ``cache_dir``."""
    path = judge_path(data, cache_dir, width, epochs)
    payload, trained = load_or_compute(path, lambda: train_judge(data, width, epochs, device))
    return path, payload, trained
