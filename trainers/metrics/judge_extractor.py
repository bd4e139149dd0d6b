"""The judge as a torch-fidelity feature extractor (``ltgan-judge``), registered by
``fidelity.register_judge``; this module imports torch-fidelity, so it is imported only then."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from trainers.metrics.judge import JudgeNet


class JudgeFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity feature extractor over a cached judge: uint8 N x 3 x H x W ->
    ``feat`` (the 32-d bottleneck, for FID/KID) and ``logits`` (for IS and labelling)."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(f"the '{name}' feature extractor needs feature_extractor_weights_path "
                             f"(a cached judge-<hash>.pt)")
        payload = torch.load(feature_extractor_weights_path, map_location="cpu", weights_only=True)
        self.channels = int(payload["channels"])
        self.resolution = int(payload["resolution"])
        self.net = JudgeNet(self.channels, int(payload["num_classes"]), int(payload["width"]), self.resolution)
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
            x = x.mean(dim=1, keepdim=True)  # grey images arrive repeated to 3 channels
        if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        feat, logits = self.net(x.div(127.5).sub(1.0))
        out = {"feat": feat, "logits": logits}
        return tuple(out[name] for name in self.features_list)
