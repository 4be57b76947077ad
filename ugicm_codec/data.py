"""Reading .ugc files straight into a PyTorch training or inference job.

    >>> from torch.utils.data import DataLoader
    >>> from ugicm_codec.data import UgcDataset
    >>> ds = UgcDataset("corpus/", prefer="machine")          # a folder, or a list of files
    >>> for batch in DataLoader(ds, batch_size=8, num_workers=4):  # same-size images stack
    ...     ...                                                # uint8 tensors, Bx3xHxW

and, with WebDataset (not needed by this module), a decoder for the ``.ugc`` entries of samples:

    >>> ds = wds.WebDataset(urls).decode(ugc_decoder(prefer="human"))

The model is loaded once per process, on its first item: once in each DataLoader worker, never
pickled into the workers with the dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import UgicmError
from .preferences import parse_preference

_codecs: dict = {}  # (weights, device, threads) -> this process's Codec


def shared_codec(weights: str | Path | None = None, device: str = "cpu", threads: int | None = None):
    """This process's Codec for these options, loaded on the first call."""
    key = (str(weights) if weights is not None else None, device, threads)
    if key not in _codecs:
        from .codec import Codec

        _codecs[key] = Codec(weights=weights, device=device, threads=threads)
    return _codecs[key]


def _as_output(rgb: np.ndarray, as_tensors: bool):
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1) if as_tensors else rgb


class UgcDataset(Dataset):
    """The decodes of a folder's (or a list's) .ugc files at one preference.

    An item is a 3xHxW uint8 tensor of the decoded RGB (``as_tensors=False``: an HxWx3 array),
    passed through ``transform`` when one is given. Greyscale files give their three coded
    channels; alpha is left out. ``device`` is where synthesis runs ("cpu" by default, which
    suits worker processes; "cuda" in the main process, ``num_workers=0``, uses a GPU)."""

    def __init__(
        self,
        files: str | Path | Sequence[str | Path],
        prefer: str | float = "human",
        *,
        weights: str | Path | None = None,
        device: str = "cpu",
        threads: int | None = None,
        transform: Callable | None = None,
        as_tensors: bool = True,
        recursive: bool = False,
    ):
        if isinstance(files, (str, Path)):
            folder = Path(files)
            if not folder.is_dir():
                raise UgicmError(f"{folder} is not a directory (give a folder or a list of files)")
            self.files = sorted((folder.rglob if recursive else folder.glob)("*.ugc"))
            if not self.files:
                raise UgicmError(f"no .ugc files in {folder}")
        else:
            self.files = [Path(f) for f in files]
        self.prefer = parse_preference(prefer)  # a bad value is refused now, not in a worker
        self.weights, self.device, self.threads = weights, device, threads
        self.transform, self.as_tensors = transform, as_tensors

    def __len__(self) -> int:
        return len(self.files)

    def codec(self):
        return shared_codec(self.weights, self.device, self.threads)

    def __getitem__(self, index: int):
        path = self.files[index]
        try:
            rgb, _ = self.codec().decode_array(path, self.prefer)
        except UgicmError as e:
            raise type(e)(f"{path}: {e}") from None
        item = _as_output(rgb, self.as_tensors)
        return self.transform(item) if self.transform is not None else item


class UgcDecoder:
    """A WebDataset-style decoder: ``decoder(key, data)`` decodes a sample entry whose key ends
    in ``.ugc`` (the whole key, or its extension: ``"ugc"``, ``"machine.ugc"``) and returns None
    for any other entry, so that other decoders handle it. Picklable, for worker processes."""

    def __init__(
        self,
        prefer: str | float = "human",
        *,
        weights: str | Path | None = None,
        device: str = "cpu",
        threads: int | None = None,
        as_tensors: bool = True,
    ):
        self.prefer = parse_preference(prefer)
        self.weights, self.device, self.threads, self.as_tensors = weights, device, threads, as_tensors

    def __call__(self, key: str, data: bytes):
        if key.lower().rsplit(".", 1)[-1] != "ugc":
            return None
        rgb, _ = shared_codec(self.weights, self.device, self.threads).decode_array(data, self.prefer)
        return _as_output(rgb, self.as_tensors)


def ugc_decoder(prefer: str | float = "human", **options) -> UgcDecoder:
    """``UgcDecoder(prefer, **options)``: for ``webdataset.WebDataset(...).decode(...)``."""
    return UgcDecoder(prefer, **options)
