"""The judge: a small classifier trained once on the dataset's full balanced training split.

It labels generated images (per-class FID of unconditional models, class histograms) and, offline,
provides the feature space FID/KID are computed in. It is cached under ``<root>/cache/`` by a hash of
the data and its own config, written atomically under a file lock so concurrent trials never train
it twice or read a half-written file, and registered with torch-fidelity as a feature extractor.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from trainers.data import DataBundle, to_float

JUDGE_NAME = "ltgan-judge"
JUDGE_VERSION = 1
# A low feature dimension keeps per-class covariances meaningful: digits has ~36 test images a class.
FEATURE_DIM = 32


class JudgeNet(nn.Module):
    def __init__(self, channels: int, num_classes: int, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, 2, 1), nn.BatchNorm2d(4 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4 * width, FEATURE_DIM), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.body(x)
        return feat, self.head(feat)


def judge_key(data: DataBundle, width: int, epochs: int) -> str:
    h = hashlib.sha256()
    h.update(f"{JUDGE_VERSION}|{data.name}|{data.resolution}|{data.channels}|{data.num_classes}|{width}|{epochs}".encode())
    h.update(data.full_train.images.numpy().tobytes())
    h.update(data.full_train.labels.numpy().tobytes())
    h.update(data.test.images.numpy().tobytes())
    return h.hexdigest()[:20]


def _train(data: DataBundle, width: int, epochs: int, device: torch.device) -> tuple[dict, float]:
    net = JudgeNet(data.channels, data.num_classes, width).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    images, labels = data.full_train.images, data.full_train.labels
    gen = torch.Generator().manual_seed(0)
    batch = 128
    steps = epochs * max(1, len(labels) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=gen)
        for start in range(0, len(labels) - batch + 1, batch):
            idx = order[start:start + batch]
            x = to_float(images[idx]).to(device)
            # small random shifts make the judge robust to the GAN's imprecise placement
            shift = torch.randint(-1, 2, (2,), generator=gen).tolist()
            x = torch.roll(x, shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(net(x)[1], labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(data.test), 512):
            x = to_float(data.test.images[start:start + 512]).to(device)
            correct += int((net(x)[1].argmax(1).cpu() == data.test.labels[start:start + 512]).sum())
    return {k: v.cpu() for k, v in net.state_dict().items()}, correct / max(1, len(data.test))


def load_or_train_judge(data: DataBundle, cache_dir: Path, width: int, epochs: int,
                        device: torch.device) -> tuple[Path, float, bool]:
    """(path of the cached judge, its balanced test accuracy, whether this call trained it)."""
    from filelock import FileLock

    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"judge-{data.name}-{judge_key(data, width, epochs)}.pt"
    trained = False
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            # the judge's own seeded RNG: the trainer's global RNG stream is not disturbed
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                state, accuracy = _train(data, width, epochs, device)
            payload = {"state_dict": state, "test_accuracy": accuracy, "channels": data.channels,
                       "num_classes": data.num_classes, "width": width}
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save(payload, tmp)
            os.replace(tmp, path)
            trained = True
        payload = torch.load(path, map_location="cpu", weights_only=True)
    return path, float(payload["test_accuracy"]), trained


class JudgeFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity feature extractor over the judge: uint8 N x 3 x H x W -> ("feat", "logits")."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError("the judge feature extractor needs feature_extractor_weights_path")
        payload = torch.load(feature_extractor_weights_path, map_location="cpu", weights_only=True)
        self.channels = int(payload["channels"])
        self.net = JudgeNet(self.channels, int(payload["num_classes"]), int(payload["width"]))
        self.net.load_state_dict(payload["state_dict"])
        self.net.eval()

    @staticmethod
    def get_provided_features_list():
        return "feat", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits"}.get(metric, "feat")

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 16, 16, dtype=torch.uint8)

    def forward(self, x: torch.Tensor):
        x = x.float()
        if self.channels == 1:
            x = x.mean(dim=1, keepdim=True)  # grey images were repeated to 3 channels
        feat, logits = self.net(x.div(127.5).sub(1.0))
        out = {"feat": feat, "logits": logits}
        return tuple(out[name] for name in self.features_list)


def register_judge() -> None:
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if JUDGE_NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(JUDGE_NAME, JudgeFeatureExtractor)
