"""Training data: folders of images held in memory as uint8, served as random flipped crops."""

from __future__ import annotations

import multiprocessing
import random
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .semantic import object_proposals

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
        patch = im[top : top + c, left : left + c]
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


class Batches:
    """The training loop's batches: ``(x, crops, proposals)`` for step after step.

    ``proposals_at(step)`` says how many object proposals each crop of that step's batch needs (0:
    none; a pure function of the step, since sessions follow the step count). With ``workers``
    processes, proposals are computed ``ahead`` batches in advance, off the loop: on a GPU the
    instance scale's graph segmentation, run on the loop's one CPU core, took most of a machine
    step (docs/training.md). The crops are still drawn here, in
    order, so a run sees the same batches with or without workers, and ``state()`` is the crop
    stream's state at the next batch the loop has not taken: a checkpoint resumes exactly,
    whatever was prefetched.
    """

    def __init__(
        self, crops: RandomCrops, proposals_at: Callable[[int], int], workers: int = 0, ahead: int = 4
    ):
        self.crops = crops
        self.proposals_at = proposals_at
        self.ahead = max(1, ahead)
        self.pool = None
        if workers > 0:
            # forkserver: the training process has threads (and perhaps CUDA) that fork copies badly.
            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
        self.queue: deque = deque()  # (step, crop-stream state before it, x, crops, futures)

    def _draw(self, step: int) -> None:
        state = self.crops.state()
        x, crops = self.crops.next_batch()
        count = self.proposals_at(step)
        futures = [self.pool.submit(object_proposals, c, count) for c in crops] if count else None
        self.queue.append((step, state, x, crops, futures))

    def next(self, step: int) -> tuple:
        if self.pool is None:
            x, crops = self.crops.next_batch()
            count = self.proposals_at(step)
            return x, crops, [object_proposals(c, count) for c in crops] if count else None
        if self.queue and self.queue[0][0] != step:  # the loop jumped (a new start): draw afresh
            self.set_state(self.queue[0][1])
        while len(self.queue) < self.ahead:
            self._draw(self.queue[-1][0] + 1 if self.queue else step)
        _, _, x, crops, futures = self.queue.popleft()
        return x, crops, [f.result() for f in futures] if futures else None

    def state(self) -> object:
        return self.queue[0][1] if self.queue else self.crops.state()

    def set_state(self, state) -> None:
        for *_, futures in self.queue:
            for f in futures or ():
                f.cancel()
        self.queue.clear()
        self.crops.set_state(state)

    def close(self) -> None:
        self.set_state(self.state())
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None


def validation_images(folder: str | Path, count: int, size: int) -> torch.Tensor:
    """The first ``count`` images of a folder, centre-cropped to ``size``: a fixed validation batch."""
    out = []
    for path in list_images([folder])[:count]:
        im = load_rgb(path)
        h, w = im.shape[:2]
        c = min(size, h, w) // 64 * 64
        top, left = (h - c) // 2, (w - c) // 2
        out.append(torch.from_numpy(np.ascontiguousarray(im[top : top + c, left : left + c])))
    c = min(t.shape[0] for t in out)
    return torch.stack([t[:c, :c] for t in out]).permute(0, 3, 1, 2).float().div_(255)
