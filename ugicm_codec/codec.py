"""The library: images to .ugc bytes and back, for a preference between human and machine.

    >>> from ugicm_codec import Codec
    >>> codec = Codec()                         # shipped weights, GPU when there is one
    >>> data = codec.encode(Image.open("a.png"), quality=60)
    >>> human = codec.decode(data, prefer="human")
    >>> machine = codec.decode(data, prefer="machine")   # or any float in [0, 1]
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

with warnings.catch_warnings():
    # CompressAI scripts a helper with torch.jit at import time, which newer torch deprecates.
    warnings.simplefilter("ignore", FutureWarning)
    import compressai  # noqa: F401

from . import container
from .container import DEFAULT_MAX_PIXELS, PAD_MULTIPLE, UgcFile
from .errors import FormatError, ImageError, ModelMismatchError, UgicmError
from .image_io import from_rgb_array, open_image, to_rgb_array
from .weights import WeightsInfo, load_model, locate

PREFERENCES = {"human": 0.0, "machine": 1.0}
DEFAULT_QUALITY = 60.0


def parse_preference(value: str | float) -> float:
    """'human' -> 0, 'machine' -> 1, or a number in [0, 1]."""
    if isinstance(value, str):
        if value.lower() in PREFERENCES:
            return PREFERENCES[value.lower()]
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"preference must be human, machine or a number in [0, 1], not {value!r}") from None
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"preference must be in [0, 1], not {value}")
    return value


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UgicmError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(name)


@dataclass
class EncodeResult:
    data: bytes
    width: int
    height: int
    level: float
    seconds: float

    @property
    def bpp(self) -> float:
        return len(self.data) * 8 / (self.width * self.height)


class Codec:
    def __init__(self, weights: str | Path | None = None, device: str = "auto",
                 threads: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS):
        if threads:
            torch.set_num_threads(threads)
        self.info: WeightsInfo = locate(weights)
        self.model = load_model(self.info)
        self.device = resolve_device(device)
        self.model.place(self.device)
        self.max_pixels = max_pixels

    # ------------------------------------------------------------------ rate
    @property
    def max_level(self) -> float:
        return self.model.max_level

    def quality_to_level(self, quality: float) -> float:
        if not 0.0 <= quality <= 100.0:
            raise ValueError(f"quality must be in [0, 100], not {quality}")
        return quality / 100.0 * self.max_level

    # ------------------------------------------------------------------ encode
    def encode(self, image: Image.Image | np.ndarray | str | Path | bytes,
               quality: float | None = None, target_bpp: float | None = None) -> bytes:
        return self.encode_detailed(image, quality, target_bpp).data

    def encode_detailed(self, image, quality: float | None = None,
                        target_bpp: float | None = None) -> EncodeResult:
        start = time.perf_counter()
        rgb, mode = self._as_rgb(image)
        h, w = rgb.shape[:2]
        x = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).to(self.device)
        x = x.permute(2, 0, 1)[None].float().div_(255)
        x = _pad(x)
        y = self.model.analysis(x)

        def code(level: float) -> bytes:
            out = self.model.compress_latent(y, level)
            return container.build(UgcFile(
                model_id=self.info.name, weights_digest=self.info.digest, width=w, height=h,
                colour_mode=mode, rate_level=level, y_shape=out["y_shape"], z_shape=out["z_shape"],
                chunks={container.CHUNK_Z: out["strings"][1], container.CHUNK_Y: out["strings"][0]},
            ))

        if target_bpp is not None:
            level, data = self._search_rate(code, target_bpp, w * h)
        else:
            level = self.quality_to_level(DEFAULT_QUALITY if quality is None else quality)
            data = code(level)
        return EncodeResult(data, w, h, level, time.perf_counter() - start)

    def _search_rate(self, code, target_bpp: float, pixels: int, iterations: int = 12):
        """The highest level whose file fits ``target_bpp`` (bisection; rate grows with level).
        If even the lowest level is larger, that one is returned."""
        if target_bpp <= 0:
            raise ValueError("target bpp must be positive")
        low, high = 0.0, self.max_level
        best = (low, code(low))
        if len(best[1]) * 8 / pixels > target_bpp:
            return best
        top = code(high)
        if len(top) * 8 / pixels <= target_bpp:
            return high, top
        for _ in range(iterations):
            mid = (low + high) / 2
            data = code(mid)
            if len(data) * 8 / pixels <= target_bpp:
                low, best = mid, (mid, data)
            else:
                high = mid
        return best

    def _as_rgb(self, image) -> tuple[np.ndarray, str]:
        if isinstance(image, np.ndarray):
            arr = image
            if arr.dtype != np.uint8:
                raise ImageError(f"arrays must be uint8, not {arr.dtype}")
            if arr.ndim == 2:
                return np.repeat(arr[..., None], 3, axis=2), "L"
            if arr.ndim != 3 or arr.shape[2] not in (1, 3):
                raise ImageError(f"arrays must be HxW, HxWx1 or HxWx3, not {arr.shape}")
            if arr.shape[2] == 1:
                return np.repeat(arr, 3, axis=2), "L"
            if arr.shape[0] * arr.shape[1] > self.max_pixels:
                raise ImageError("image exceeds the pixel limit")
            return arr, "RGB"
        if not isinstance(image, Image.Image):
            image = open_image(image if isinstance(image, bytes) else Path(image), self.max_pixels)
        elif image.width * image.height > self.max_pixels:
            raise ImageError("image exceeds the pixel limit")
        return to_rgb_array(image)

    # ------------------------------------------------------------------ decode
    def parse(self, data: bytes) -> UgcFile:
        f = container.parse(data, self.max_pixels)
        if f.model_id != self.info.name:
            raise ModelMismatchError(f"file was made by model {f.model_id!r}; loaded model is {self.info.name!r}")
        if f.weights_digest != self.info.digest:
            raise ModelMismatchError(
                f"file was made with other weights (digest {f.weights_digest.hex()}, loaded "
                f"{self.info.digest.hex()}); decode it with the weights that made it"
            )
        if not 0.0 <= f.rate_level <= self.max_level:
            raise FormatError(f"rate level {f.rate_level} is outside this model's ladder")
        return f

    def decode_array(self, data: bytes | UgcFile, prefer: str | float = "human") -> tuple[np.ndarray, str]:
        beta = parse_preference(prefer)
        f = data if isinstance(data, UgcFile) else self.parse(data)
        try:
            y_hat = self.model.decompress_latent(f.y_string, f.z_string, f.z_shape)
        except (RuntimeError, ValueError) as e:
            raise FormatError(f"corrupt entropy-coded data ({e})") from None
        x_hat = self.model.synthesis(y_hat, f.rate_level, beta)
        x_hat = x_hat[0, :, : f.height, : f.width].clamp_(0, 1).mul_(255).round_()
        return x_hat.to(torch.uint8).permute(1, 2, 0).cpu().numpy(), f.colour_mode

    def decode(self, data: bytes, prefer: str | float = "human") -> Image.Image:
        return from_rgb_array(*self.decode_array(data, prefer))


def _pad(x: torch.Tensor) -> torch.Tensor:
    """Pads to a multiple of 64 by edge replication (cheaper to code than zeros); cropped on decode."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % PAD_MULTIPLE, (-w) % PAD_MULTIPLE
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")
