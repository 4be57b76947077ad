"""Multi-scale semantic loss L_sem of UG-ICM.

L_sem = sum over scales of (1 - cos(T(original), T(decoded))) for a frozen teacher T, at
- global scale: the whole image;
- local scale: a random crop pair at the same place in both images;
- instance scale: crops of object proposals found on the *original* image by Felzenszwalb's
  graph-based segmentation, a class-agnostic unsupervised method (no detector, no labels).
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def object_proposals(
    image: np.ndarray, count: int, min_fraction: float = 0.02, max_fraction: float = 0.7
) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (top, left, height, width) of the largest graph-based segments.

    ``image`` is HxWx3 uint8. Segments covering almost nothing or almost everything are skipped:
    they are texture or background rather than objects.
    """
    from skimage.segmentation import felzenszwalb

    # Segment at most ~64 px on the short side: proposals are coarse boxes, and the graph
    # segmentation cost grows with pixels.
    step = max(1, min(image.shape[:2]) // 64)
    small = image[::step, ::step]
    h, w = small.shape[:2]
    labels = felzenszwalb(small, scale=max(h, w), sigma=0.8, min_size=max(8, h * w // 200))
    sizes = np.bincount(labels.ravel())
    boxes = []
    for label in np.argsort(sizes)[::-1]:
        frac = sizes[label] / (h * w)
        if frac > max_fraction:
            continue
        if frac < min_fraction or len(boxes) == count:
            break
        ys, xs = np.nonzero(labels == label)
        top, left = int(ys.min()), int(xs.min())
        bh, bw = int(ys.max()) - top + 1, int(xs.max()) - left + 1
        if bh * step >= 8 and bw * step >= 8:
            boxes.append((top * step, left * step, bh * step, bw * step))
    return boxes


class SemanticLoss(nn.Module):
    def __init__(
        self,
        teacher: nn.Module,
        crop_fraction: float = 0.5,
        instances: int = 2,
        instance_size: int = 96,
        seed: int = 0,
        scale_range: tuple[float, float] = (1.0, 1.0),
    ):
        super().__init__()
        self.teacher = teacher
        # The global and local scales show the teacher both images resized by one factor drawn
        # from scale_range: the models a decode is for read it at their own input size (about
        # 0.65x for a 224-px classifier on ImageNet photos, or a 416-px detector on COCO), so a
        # decode tuned to the teacher at one scale only is tuned to details those models never see.
        self.scale_range = scale_range
        # The local scale's crop positions and the resize factors: a generator of its own, so a
        # checkpoint can store its state and a resumed run draws what the uninterrupted one would.
        self.rng = random.Random(seed)
        self.crop_fraction = crop_fraction
        self.instances = instances
        self.instance_size = instance_size

    def rescaled(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.scale_range
        if hi == lo == 1:
            return a, b
        scale = self.rng.uniform(lo, hi)
        size = [max(8, round(side * scale)) for side in a.shape[-2:]]
        # Antialiased, as Pillow's resize is for the downstream models' inputs.
        return tuple(
            F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True) for t in (a, b)
        )

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # The original's embedding is a fixed target: no gradient flows into it.
        with torch.no_grad():
            target = self.teacher(a)
        return 1 - F.cosine_similarity(self.teacher(b).float(), target.float(), dim=1)

    def forward(
        self,
        x: torch.Tensor,
        x_hat: torch.Tensor,
        proposals: list[list[tuple[int, int, int, int]]] | None = None,
    ) -> dict:
        """Per-sample terms. ``x`` and ``x_hat`` are Bx3xHxW in [0, 1]."""
        x_hat = x_hat.clamp(0, 1)
        terms = {"sem_global": self.distance(*self.rescaled(x, x_hat))}

        h, w = x.shape[-2:]
        ch, cw = max(8, int(h * self.crop_fraction)), max(8, int(w * self.crop_fraction))
        top, left = self.rng.randint(0, h - ch), self.rng.randint(0, w - cw)
        terms["sem_local"] = self.distance(
            *self.rescaled(
                x[..., top : top + ch, left : left + cw], x_hat[..., top : top + ch, left : left + cw]
            )
        )

        if proposals is not None and self.instances > 0:
            originals, decoded, owner = [], [], []
            for i, boxes in enumerate(proposals):
                for top, left, bh, bw in boxes[: self.instances]:
                    size = (self.instance_size, self.instance_size)
                    originals.append(
                        F.interpolate(
                            x[i : i + 1, :, top : top + bh, left : left + bw],
                            size=size,
                            mode="bilinear",
                            align_corners=False,
                        )
                    )
                    decoded.append(
                        F.interpolate(
                            x_hat[i : i + 1, :, top : top + bh, left : left + bw],
                            size=size,
                            mode="bilinear",
                            align_corners=False,
                        )
                    )
                    owner.append(i)
            per_sample = torch.zeros(x.size(0), device=x.device)
            if owner:
                d = self.distance(torch.cat(originals), torch.cat(decoded))
                idx = torch.tensor(owner, device=x.device)
                counts = torch.zeros_like(per_sample).index_add_(0, idx, torch.ones_like(d))
                per_sample = per_sample.index_add(0, idx, d) / counts.clamp(min=1)
            terms["sem_instance"] = per_sample
        terms["sem"] = sum(terms.values())
        return terms
