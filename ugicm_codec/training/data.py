"""Training data: folders of images held in memory as uint8, served as random flipped crops."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def list_images(folders: list[str | Path]) -> list[Path]:
    files: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            files.append(folder)
            continue
        files.extend(p for p in sorted(folder.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES)
    return files


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


class RandomCrops:
    """Infinite stream of batches of random ``crop``x``crop`` patches with random flips."""

    def __init__(self, folders: list[str | Path], crop: int, batch_size: int, seed: int = 0):
        self.files = list_images(folders)
        if not self.files:
            raise FileNotFoundError(f"no images found in {', '.join(map(str, folders))}")
        self.images = [load_rgb(p) for p in self.files]
        self.images = [im for im in self.images if min(im.shape[:2]) >= crop] or self.images
        self.crop = crop
        self.batch_size = batch_size
        self.rng = random.Random(seed)

    def state(self) -> object:
        return self.rng.getstate()

    def set_state(self, state) -> None:
        self.rng.setstate(state)

    def _one(self) -> np.ndarray:
        im = self.images[self.rng.randrange(len(self.images))]
        h, w = im.shape[:2]
        c = min(self.crop, h, w)
        top, left = self.rng.randint(0, h - c), self.rng.randint(0, w - c)
        patch = im[top:top + c, left:left + c]
        if c < self.crop:  # tiny images: pad by reflection up to the crop size
            patch = np.pad(patch, ((0, self.crop - c), (0, self.crop - c), (0, 0)), mode="reflect")
        if self.rng.random() < 0.5:
            patch = patch[:, ::-1]
        if self.rng.random() < 0.5:
            patch = patch[::-1]
        return np.ascontiguousarray(patch)

    def next_batch(self) -> tuple[torch.Tensor, np.ndarray]:
        """(float batch Bx3xHxW in [0, 1], the same crops as uint8 BxHxWx3)."""
        crops = np.stack([self._one() for _ in range(self.batch_size)])
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div_(255)
        return x, crops


def validation_images(folder: str | Path, count: int, size: int) -> torch.Tensor:
    """The first ``count`` images of a folder, centre-cropped to ``size``: a fixed validation batch."""
    out = []
    for path in list_images([folder])[:count]:
        im = load_rgb(path)
        h, w = im.shape[:2]
        c = min(size, h, w) // 64 * 64
        top, left = (h - c) // 2, (w - c) // 2
        out.append(torch.from_numpy(np.ascontiguousarray(im[top:top + c, left:left + c])))
    c = min(t.shape[0] for t in out)
    return torch.stack([t[:c, :c] for t in out]).permute(0, 3, 1, 2).float().div_(255)
