"""The library: images to .ugc bytes and back, for a preference between human and machine.

    >>> from ugicm_codec import Codec
    >>> codec = Codec()                         # shipped weights, GPU when there is one
    >>> data = codec.encode(Image.open("a.png"), quality=60)
    >>> human = codec.decode(data, prefer="human")
    >>> machine = codec.decode(data, prefer="machine")   # or any float in [0, 1]
    >>> clean = codec.decode(data, prefer="restore")     # the clean image behind a degraded one

Images are processed in tiles so memory stays bounded whatever their size:
- analysis: pixel tiles of one entropy tile (1024 px) plus a 32 px margin, cropped in the latent;
- entropy coding: each entropy tile has its own z and y streams (formats/ugc.md);
- synthesis: latent tiles with a margin wider than g_s's receptive field, so no seam appears.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import torch
from PIL import Image

from . import container, residual
from .container import DEFAULT_MAX_PIXELS, DEFAULT_TILE, LATENT_STRIDE, PAD_MULTIPLE, UgcFile
from .errors import FormatError, ImageError, ModelMismatchError, UgicmError
from .image_io import PSNR_CAP_DB, Picture, check_size, open_image, psnr, to_picture
from .preferences import PREFERENCES, RESTORE, parse_preference  # noqa: F401  (re-exported)
from .rates import chosen_rate
from .synthesis import (
    DEFAULT_PRECISION,
    REFERENCE_TILE,
    arithmetic,
    check_precision,
    plan,
    synthesize,
    tile_count,
)
from .weights import WeightsInfo, load_model, load_restore, locate
from .workers import tile_map

# What encode reads: a path, encoded image bytes, a binary file, a PIL image, or a uint8 pixel
# array (HxW, HxWx1, HxWx3); a 1-D uint8 array is taken as encoded image bytes.
ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray]
# What decode reads: a .ugc file as a path, bytes, a binary file, a 1-D uint8 array of its bytes,
# a parsed UgcFile, or a PIL image opened from a .ugc file (ugicm_codec.pillow).
UgcSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, np.ndarray, Image.Image, UgcFile]
Progress = Callable[[int, int], None]

DEFAULT_QUALITY = 50.0
# Latent samples of context around each analysis tile: g_a's four 5×5 stride-2 convolutions make
# latent sample j depend on pixels 16j − 30 … 16j + 30, so 2 samples (32 px) keep the tile's zero
# padding out of view, and tiles give the latent of the whole image.
ANALYSIS_MARGIN = 2
SYNTHESIS_TILE = REFERENCE_TILE  # latent samples (640 px) per tile side of the reference decode


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
    target_met: bool | None = None  # with a target (bpp, size or PSNR): whether the file meets it
    psnr: float | None = None  # with a PSNR target: the human decode's PSNR, in dB

    @property
    def bpp(self) -> float:
        return len(self.data) * 8 / (self.width * self.height)


def _tiles(total: int, size: int):
    for start in range(0, total, size):
        yield start, min(start + size, total)


class Codec:
    def __init__(
        self,
        weights: str | Path | None = None,
        device: str = "auto",
        threads: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        synthesis_tile: int | None = None,
        entropy_tile: int = DEFAULT_TILE,
        precision: str = DEFAULT_PRECISION,
    ):
        """``precision``: how the transforms compute (``synthesis.plan``): "fast" (the default,
        the fastest within 0.05 dB of float32 here), "float32" (the reference encode and decode,
        the decode's pixels the same for any thread count) or "bfloat16". The parse is exact
        under all of them. ``synthesis_tile``: latent samples per synthesis tile side (default:
        the precision's own)."""
        self.precision = check_precision(precision)
        if threads:
            torch.set_num_threads(threads)
        self.info: WeightsInfo = locate(weights)
        self.model = load_model(self.info)
        self.device = resolve_device(device)
        self.model.place(self.device)
        self.max_pixels = max_pixels
        self.synthesis_tile = synthesis_tile  # None: the precision's own (synthesis.plan)
        self.entropy_tile = entropy_tile

    # ------------------------------------------------------------------ rate
    @property
    def max_level(self) -> float:
        """The top of the learned ladder: the highest rate level a file's header holds."""
        return self.model.max_level

    @property
    def top_level(self) -> float:
        """The top of the whole rate range: levels above ``max_level`` add the residual layer
        (``residual``) to the human decode of the ladder's top."""
        return residual.top_level(self.max_level)

    def quality_to_level(self, quality: float) -> float:
        """Quality 0-100 onto the whole range, linearly: 0-80 the ladder, 80-100 the residual layer."""
        if not 0.0 <= quality <= 100.0:
            raise ValueError(f"quality must be in [0, 100], not {quality}")
        return quality / 100.0 * self.top_level

    # ------------------------------------------------------------------ encode
    def encode(
        self,
        image: ImageSource,
        *,
        quality: float | None = None,
        target_bpp: float | None = None,
        target_size: int | None = None,
        target_psnr: float | None = None,
        keep_metadata: bool = True,
        refine_steps: int = 0,
    ) -> bytes:
        """``image``: a path, encoded image bytes (PNG, JPEG, ...), a binary file object, a PIL
        image, or an HxW / HxWx1 / HxWx3 uint8 array.
        The rate, keyword-only: ``quality`` (0-100), or one target searched on the continuous rate:
        ``target_bpp`` or ``target_size`` (bytes), the largest file within it, or ``target_psnr``
        (dB), the smallest file whose human decode reaches it.
        ``refine_steps`` > 0 optimises the latent for the human decode first (``refinement``):
        a slower encode, the same format and decoder.
        Raises ImageError for an input it cannot read, ValueError for a rate out of range."""
        return self.encode_detailed(
            image,
            quality=quality,
            target_bpp=target_bpp,
            target_size=target_size,
            target_psnr=target_psnr,
            keep_metadata=keep_metadata,
            refine_steps=refine_steps,
        ).data

    def encode_detailed(
        self,
        image: ImageSource,
        *,
        quality: float | None = None,
        target_bpp: float | None = None,
        target_size: int | None = None,
        target_psnr: float | None = None,
        keep_metadata: bool = True,
        refine_steps: int = 0,
        progress=None,
    ) -> EncodeResult:
        """``encode`` with the level used, the time taken and, for a target, whether it was met.
        ``progress(done, total)`` is called after each tile analysed and each tile coded (a
        target search codes the tiles once per probe, so its bar goes back for each probe)."""
        start = time.perf_counter()
        chosen_rate(quality=quality, target_bpp=target_bpp, target_size=target_size, target_psnr=target_psnr)
        picture = self.picture(image, keep_metadata)
        w, h = picture.size
        padded = _edge_padded(picture.rgb)
        y_shape, z_shape = container.latent_shapes(w, h)
        grid = container.tile_grid(z_shape, self.entropy_tile)
        # Analysis runs over the same tiles as entropy coding: half the work each, for the bar.
        y = self._analysis(padded, None if progress is None else lambda done: progress(done, 2 * len(grid)))
        alpha = None if picture.alpha is None else zlib.compress(picture.alpha.tobytes(), 9)
        top: dict[bool, tuple] = {}  # refine -> (base-layer file, its reference decode) at the top

        def code(level: float, refine: bool = False) -> bytes:
            above = level > self.max_level
            if above and refine in top:
                return layered(level, *top[refine])
            base = min(level, self.max_level)

            def compress(tile) -> tuple[bytes, bytes]:
                zt, zl, zh, zw = tile
                s = 4  # y samples per z sample
                y_tile, z_tile = y[..., zt * s : (zt + zh) * s, zl * s : (zl + zw) * s], None
                if refine:
                    refined = self._refine_tile(padded, (w, h), tile, y_tile, base, refine_steps)
                    y_tile, z_tile = refined.y, refined.z
                out = self.model.compress_latent(y_tile, base, z_tile)
                return out["strings"][1], out["strings"][0]

            tiles = []
            for strings in tile_map(compress, grid, parallel=not refine):
                tiles.append(strings)
                if progress is not None:
                    progress(len(grid) + len(tiles), 2 * len(grid))
            f = UgcFile(
                model_id=self.info.name,
                weights_digest=self.info.digest,
                width=w,
                height=h,
                colour_mode=picture.colour_mode,
                rate_level=base,
                y_shape=y_shape,
                z_shape=z_shape,
                tiles=tiles,
                tile=self.entropy_tile,
                alpha=alpha,
                icc_profile=picture.icc_profile,
                exif=picture.exif,
            )
            if not above:
                return container.build(f)
            # The residual is taken against the reference decode, what a float32 decoder makes.
            y_hat = self._decode_latent(f)
            top[refine] = f, self._synthesis(y_hat, f, 0.0, precision="float32")
            return layered(level, *top[refine])

        layers: dict[bytes, tuple[np.ndarray, bytes]] = {}  # file -> (reference decode, residual)

        def layered(level: float, f: UgcFile, reference: np.ndarray) -> bytes:
            step = residual.step_at(level, self.max_level)
            payload = residual.encode(picture.rgb, reference, step)
            data = container.build(dataclasses.replace(f, residual=payload))
            if payload is not None:
                layers[data] = reference, payload
            return data

        def human(data: bytes) -> Picture:
            """The human decode of a file just coded (a residual probe reuses its reference decode)."""
            if data in layers:
                return Picture(residual.apply(*layers[data]), picture.colour_mode)
            return self.decode_picture(data, 0.0)

        met = reached = None
        if target_bpp is not None or target_size is not None:
            if (target_bpp if target_size is None else target_size) <= 0:
                raise ValueError("a target bpp or size must be positive")
            bits = target_size * 8 if target_size is not None else target_bpp * w * h
            level, data, met = self._within_budget(code, bits, refine_steps)
        elif target_psnr is not None:
            level, data, reached = self._reaching_psnr(
                code, human, picture.planes(), target_psnr, refine_steps
            )
            met = reached >= target_psnr
        else:
            level = self.quality_to_level(DEFAULT_QUALITY if quality is None else quality)
            data = code(level, refine=refine_steps > 0)
        return EncodeResult(data, w, h, level, time.perf_counter() - start, met, reached)

    # A target is searched without refinement (a dozen refined encodes would cost a dozen times
    # as much); refinement then lowers the cost at the level found, and a refined file that misses
    # a target the plain one met is not used.
    def _within_budget(self, code, bits: float, refine_steps: int) -> tuple[float, bytes, bool]:
        """(level, file, whether it fits): the largest file of at most ``bits``, or the lowest
        level's when even that is larger."""

        def fits(data: bytes) -> bool:
            return len(data) * 8 <= bits

        # The excess is in log2 of the size: the rate is about exponential in the level.
        fit, over = _search_level(
            code,
            lambda data: math.log2(len(data) * 8 / bits),
            lambda e: e <= 0,
            self.top_level,
            resolution=self.top_level / 4096,
            close_enough=lambda fit, over: fit[2] >= math.log2(0.998),
        )
        level, data, _ = fit or over
        if refine_steps > 0:
            refined = code(level, refine=True)
            if len(refined) <= len(data) or fits(refined):
                data = refined
        return level, data, fits(data)

    def _reaching_psnr(
        self, code, human, planes: np.ndarray, target: float, refine_steps: int
    ) -> tuple[float, bytes, float]:
        """(level, file, its human decode's PSNR): the smallest file whose human decode
        (``human(file)``, a Picture) reaches ``target`` dB against ``planes``
        (``Picture.planes``), or the highest level's when even that falls short."""
        if not 0 < target <= PSNR_CAP_DB:
            raise ValueError(f"target PSNR must be in (0, {PSNR_CAP_DB:g}] dB, not {target}")

        def quality(data: bytes) -> float:
            return psnr(planes, human(data).planes())

        # Each probe decodes its file, so the search stops sooner than a budget's: within 0.01 dB
        # of the target, or 1/256 of the rate range from where it is crossed.
        short, reached = _search_level(
            code,
            lambda data: quality(data) - target,
            lambda e: e < 0,
            self.top_level,
            resolution=self.top_level / 256,
            close_enough=lambda short, reached: reached[2] <= 0.01,
        )
        level, data, excess = reached or short
        if refine_steps > 0:
            refined = code(level, refine=True)
            refined_excess = quality(refined) - target
            if refined_excess >= min(0.0, excess):
                data, excess = refined, refined_excess
        return level, data, target + excess

    def _refine_tile(self, padded: np.ndarray, size, tile, y_tile: torch.Tensor, level: float, steps: int):
        """``refinement.refine_latent`` for one entropy tile: its pixels, and only those inside
        the image count."""
        from .refinement import refine_latent

        (w, h), (zt, zl, zh, zw), s = size, tile, LATENT_STRIDE * 4
        rows, cols = slice(zt * s, (zt + zh) * s), slice(zl * s, (zl + zw) * s)
        x = torch.from_numpy(np.ascontiguousarray(padded[rows, cols])).to(self.device)
        x = x.permute(2, 0, 1)[None].float().div_(255)
        mask = torch.zeros(1, 1, *x.shape[-2:])
        mask[..., : h - rows.start, : w - cols.start] = 1  # a tile always starts inside the image
        return refine_latent(self.model, x, y_tile, level, steps, mask)

    @torch.no_grad()
    def _analysis(self, padded: np.ndarray, progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """y = g_a(x) of the edge-padded image (``_edge_padded``), computed tile by tile (CPU
        tensor), in the arithmetic and layout of this codec's precision (``synthesis.plan``):
        float32 gives the reference encode; bf16, where the hardware has it, analyses in half
        the time for 0.1-0.2 % more bytes on Kodak (docs/speed.md)."""
        p = plan(self.precision, self.device)
        ph, pw = padded.shape[:2]
        yh, yw = ph // LATENT_STRIDE, pw // LATENT_STRIDE
        y = torch.empty(1, self.model.arch.M, yh, yw)
        step, m, s = self.entropy_tile * 4, ANALYSIS_MARGIN, LATENT_STRIDE
        tiles = [(r, c) for r in _tiles(yh, step) for c in _tiles(yw, step)]

        def analyse(tile) -> torch.Tensor:
            (r0, r1), (c0, c1) = tile
            a0, a1, b0, b1 = max(0, r0 - m), min(yh, r1 + m), max(0, c0 - m), min(yw, c1 + m)
            patch = torch.from_numpy(np.ascontiguousarray(padded[a0 * s : a1 * s, b0 * s : b1 * s]))
            x = patch.to(self.device).permute(2, 0, 1)[None].float().div_(255)
            if p.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with arithmetic(p, self.device):
                part = self.model.analysis(x)
            return part[..., r0 - a0 : r1 - a0, c0 - b0 : c1 - b0].cpu()

        parallel = self.device.type == "cpu" and not p.reference
        for done, (((r0, r1), (c0, c1)), part) in enumerate(
            zip(tiles, tile_map(analyse, tiles, parallel)), 1
        ):
            y[..., r0:r1, c0:c1] = part
            if progress is not None:
                progress(done)
        return y

    def picture(self, image: ImageSource | Picture, keep_metadata: bool = True) -> Picture:
        if isinstance(image, Picture):
            return image
        if isinstance(image, np.ndarray) and image.ndim == 1 and image.dtype == np.uint8:
            image = image.tobytes()  # an encoded image's bytes, as a data loader hands them
        elif isinstance(image, (bytearray, memoryview)):
            image = bytes(image)
        elif hasattr(image, "read") and not isinstance(image, Image.Image):
            image = _read_stream(image, ImageError)
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8:
                raise ImageError(f"arrays must be uint8, not {image.dtype}")
            if image.ndim == 3 and image.shape[2] == 1:
                image = image[..., 0]
            if image.ndim == 2:
                check_size(image.shape[1], image.shape[0], self.max_pixels)
                return Picture(np.repeat(image[..., None], 3, axis=2), "L")
            if image.ndim != 3 or image.shape[2] != 3:
                raise ImageError(f"arrays must be HxW, HxWx1 or HxWx3, not {image.shape}")
            check_size(image.shape[1], image.shape[0], self.max_pixels)
            return Picture(np.ascontiguousarray(image), "RGB")
        if not isinstance(image, Image.Image):
            if not isinstance(image, (bytes, str, os.PathLike)):
                raise ImageError(
                    f"cannot encode a {type(image).__name__}: give a path, bytes, a file, "
                    "a PIL image or a uint8 array"
                )
            image = open_image(image if isinstance(image, bytes) else Path(image), self.max_pixels)
        else:
            check_size(image.width, image.height, self.max_pixels)
        return to_picture(image, keep_metadata)

    # ------------------------------------------------------------------ decode
    def parse(self, data: bytes) -> UgcFile:
        f = container.parse(data, self.max_pixels)
        if f.model_id != self.info.name:
            where = self.info.where_earlier(f.weights_digest)
            raise ModelMismatchError(
                f"file was made by model {f.model_id!r}; loaded model is {self.info.name!r}"
                + (f"; {where}" if where else "")
            )
        if f.weights_digest != self.info.digest:
            where = self.info.where_earlier(f.weights_digest)
            raise ModelMismatchError(
                f"file was made with other weights (digest {f.weights_digest.hex()}, loaded "
                f"{self.info.digest.hex()}); " + (where or "decode it with the weights that made it")
            )
        if not 0.0 <= f.rate_level <= self.max_level:
            raise FormatError(f"rate level {f.rate_level} is outside this model's ladder")
        return f

    def ugc_file(self, source: UgcSource) -> UgcFile:
        """The parsed, checked .ugc file behind any ``UgcSource``."""
        return source if isinstance(source, UgcFile) else self.parse(ugc_bytes(source))

    def decode_picture(
        self, data: UgcSource, prefer: str | float = "human", *, progress: Progress | None = None
    ) -> Picture:
        """The decoded pixels and what travels beside them. ``progress(done, total)`` is called
        after each entropy tile decoded and each synthesis tile made."""
        f = self.ugc_file(data)
        beta = _layered(f, self._preference(prefer))
        alpha = _alpha_plane(f) if f.alpha is not None else None
        precision = self._precision_for(f, beta)
        if progress is not None:
            total = len(f.tiles) + tile_count(
                f.y_shape, f.height, f.width, precision, self.device, self.synthesis_tile
            )
            tick = lambda done, first=0: progress(first + done, total)  # noqa: E731
        y_hat = self._decode_latent(f, None if progress is None else tick)
        rgb = self._synthesis(
            y_hat,
            f,
            beta,
            precision=precision,
            progress=None if progress is None else lambda done: tick(done, len(f.tiles)),
        )
        return Picture(self._with_residual(rgb, f, beta), f.colour_mode, alpha, f.icc_profile, f.exif)

    def decode_array(self, data: UgcSource, prefer: str | float = "human") -> tuple[np.ndarray, str]:
        """(HxWx3 uint8 RGB, the colour mode it stands for: "RGB" or "L")."""
        picture = self.decode_picture(data, prefer)
        return picture.rgb, picture.colour_mode

    def decode(self, data: UgcSource, prefer: str | float = "human") -> Image.Image:
        """A PIL image (mode RGB, L, RGBA or LA, with its ICC profile and EXIF in ``.info``).
        ``prefer``: "human", "machine", a number in [0, 1], or "restore" (the clean image behind a
        degraded input; its add-on weights load on first use). Raises FormatError for a damaged
        or non-.ugc input, ModelMismatchError for a file made with other weights, ValueError for
        a preference outside [0, 1], WeightsError for "restore" with weights that have none."""
        return self.decode_picture(data, prefer).to_pil()

    def decode_batch(
        self,
        sources: Sequence[UgcSource],
        prefer: str | float = "human",
        *,
        as_tensors: bool = False,
        stack: bool | None = None,
        batch_size: int = 16,
    ) -> list[np.ndarray] | list[torch.Tensor]:
        """Decodes many .ugc files, in order: HxWx3 uint8 RGB arrays (as ``decode_array``, alpha
        left out), or with ``as_tensors`` 3xHxW uint8 CPU tensors.

        With ``stack`` (the default on a GPU) files of one size and rate level go through
        synthesis together, up to ``batch_size`` at a time, which keeps a GPU busy, while a
        thread entropy-decodes the next batch on the CPU; on a CPU one at a time is as fast and
        gives exactly ``decode``'s pixels. Entropy decoding is per file either way. A bad file
        raises, naming its position."""
        beta = self._preference(prefer)
        stack = self.device.type == "cuda" if stack is None else stack
        files = []
        for i, source in enumerate(sources):
            try:
                files.append(self.ugc_file(source))
            except UgicmError as e:
                raise type(e)(f"file {i}: {e}") from None
        out: list = [None] * len(files)
        groups: dict = {}
        for i, f in enumerate(files):
            key = (f.width, f.height, f.y_shape, f.rate_level, f.residual is None) if stack else i
            groups.setdefault(key, []).append(i)
        size = max(1, batch_size)
        chunks = [members[k : k + size] for members in groups.values() for k in range(0, len(members), size)]

        def parse(chunk: list[int]) -> torch.Tensor:
            return torch.cat([self._decode_latent(files[i]) for i in chunk])

        with ThreadPoolExecutor(1) as ahead:  # the next batch's parse, beside this one's synthesis
            pending = None
            for k, chunk in enumerate(chunks):
                y_hat = pending.result() if pending is not None else parse(chunk)
                pending = ahead.submit(parse, chunks[k + 1]) if stack and k + 1 < len(chunks) else None
                first = files[chunk[0]]
                b = _layered(first, beta)
                rgb = self._synthesis(y_hat, first, b, batched=True, precision=self._precision_for(first, b))
                for i, image in zip(chunk, rgb):
                    image = self._with_residual(image, files[i], b)
                    out[i] = torch.from_numpy(image).permute(2, 0, 1) if as_tensors else image
        return out

    def _preference(self, prefer: str | float) -> float | str:
        """The parsed preference; for ``restore``, the restore decode attached first (its add-on
        weights load on first use: WeightsError if these weights have none)."""
        beta = parse_preference(prefer)
        if beta == RESTORE and not self.model.has_restore:
            load_restore(self.model, self.info)
            self.model.place(self.device)
        return beta

    def _precision_for(self, f: UgcFile, beta: float | str) -> str:
        """The synthesis precision of a decode: a residual layer was taken against the reference
        decode, so the human decode of a file with one runs at float32 unless told otherwise."""
        if f.residual is not None and beta == 0.0 and self.precision == DEFAULT_PRECISION:
            return "float32"
        return self.precision

    @staticmethod
    def _with_residual(rgb: np.ndarray, f: UgcFile, beta: float | str) -> np.ndarray:
        """The human decode (β = 0, after ``_layered``) with the file's residual layer added;
        the restore decode as it is."""
        if f.residual is None or beta != 0.0:
            return rgb
        try:
            return residual.apply(rgb, f.residual)
        except (RuntimeError, ValueError, OverflowError) as e:
            raise FormatError(f"corrupt residual layer ({e})") from None

    def _decode_latent(self, f: UgcFile, progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """ŷ' of the whole file: its entropy tiles decoded side by side (``workers.tile_map``)."""
        y_hat = torch.empty(1, self.model.arch.M, *f.y_shape)
        grid = f.tile_grid()

        def decode(k: int) -> torch.Tensor:
            (_, _, zh, zw), (z_string, y_string) = grid[k], f.tiles[k]
            try:
                return self.model.decompress_latent(y_string, z_string, (zh, zw))
            except (RuntimeError, ValueError, OverflowError) as e:
                raise FormatError(f"corrupt entropy-coded data ({e})") from None

        for done, ((zt, zl, zh, zw), tile) in enumerate(zip(grid, tile_map(decode, range(len(grid)))), 1):
            y_hat[..., zt * 4 : (zt + zh) * 4, zl * 4 : (zl + zw) * 4] = tile
            if progress is not None:
                progress(done)
        return y_hat

    def _synthesis(
        self,
        y_hat: torch.Tensor,
        f: UgcFile,
        beta: float,
        batched: bool = False,
        progress: Callable[[int], None] | None = None,
        precision: str | None = None,
    ) -> np.ndarray:
        """HxWx3 pixels of ``y_hat`` (1xMxhxw); with ``batched``, NxHxWx3 of NxMxhxw latents of
        files of ``f``'s size and rate level (``synthesis.synthesize``, at this codec's precision)."""
        out = synthesize(
            self.model,
            y_hat,
            f.rate_level,
            beta,
            f.height,
            f.width,
            precision or self.precision,
            self.synthesis_tile,
            progress,
        )
        return out if batched else out[0]


def _layered(f: UgcFile, beta: float | str) -> float | str:
    """The preference a file is decoded for: with a residual layer, every preference but restore
    decodes the residual-corrected human decode. The layer is coded against the human decode,
    and an image that close to the original (40 dB and up) serves analytics better than a decode
    that trades fidelity for semantics where bits are scarce; restore keeps its own decode, which
    the residual of a degraded input would only take back towards the degradation."""
    return 0.0 if f.residual is not None and beta != RESTORE else beta


def _search_level(code, excess, holds, top: float, resolution: float, close_enough, max_probes: int = 30):
    """Where ``excess(code(level))``, which grows with the rate level, crosses from values that
    ``holds`` accepts to values it does not, on [0, ``top``]: a file's size against a budget, a
    PSNR against a target. The Illinois variant of regula falsi (Dowell & Jarratt 1971): each
    probe interpolates the bracket's two ends, and an end kept twice in a row has its weight
    halved, so on a smooth curve it converges superlinearly where bisection gains one bit per
    probe (a size search takes 5-7 probes where halving took 14). Returns the (level, file,
    excess) probes nearest the crossing on each side, None for a side with no probe; stops when
    they are ``resolution`` apart or ``close_enough(below, above)``."""

    def probe(level: float):
        data = code(level)
        return level, data, excess(data)

    below = probe(0.0)
    if not holds(below[2]):
        return None, below
    above = probe(top)
    if holds(above[2]):
        return above, None
    weight_below, weight_above, kept = below[2], above[2], None
    for _ in range(max_probes):
        if above[0] - below[0] <= resolution or close_enough(below, above):
            break
        level = above[0] - weight_above * (above[0] - below[0]) / (weight_above - weight_below)
        # never at an end, so that the bracket shrinks by at least half the resolution
        level = min(max(level, below[0] + resolution / 2), above[0] - resolution / 2)
        p = probe(level)
        if holds(p[2]):
            below, weight_below = p, p[2]
            if kept == "above":
                weight_above /= 2
            kept = "above"
        else:
            above, weight_above = p, p[2]
            if kept == "below":
                weight_below /= 2
            kept = "below"
    return below, above


def _edge_padded(rgb: np.ndarray) -> np.ndarray:
    """The image padded to a multiple of PAD_MULTIPLE by edge replication, which is cheaper to
    code than zeros; the decoder crops it away."""
    h, w = rgb.shape[:2]
    ph, pw = -(-h // PAD_MULTIPLE) * PAD_MULTIPLE, -(-w // PAD_MULTIPLE) * PAD_MULTIPLE
    return np.pad(rgb, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")


def _alpha_plane(f: UgcFile) -> np.ndarray:
    """Inflates the alpha chunk, refusing anything but exactly width*height bytes."""
    expected = f.width * f.height
    inflater = zlib.decompressobj()
    try:
        plane = inflater.decompress(f.alpha, expected + 1)
    except zlib.error:
        raise FormatError("corrupt alpha chunk") from None
    if len(plane) != expected or inflater.unconsumed_tail or not inflater.eof:
        raise FormatError("alpha chunk does not match the image size")
    return np.frombuffer(plane, dtype=np.uint8).reshape(f.height, f.width)


def _read_stream(stream, error: type[UgicmError]) -> bytes:
    try:
        data = stream.read()
    except OSError as e:
        raise error(f"cannot read: {e.strerror or e}") from None
    if not isinstance(data, (bytes, bytearray)):
        raise error("the file object must be opened in binary mode")
    return bytes(data)


def ugc_bytes(source: UgcSource) -> bytes:
    """The bytes of a .ugc file given as a path, bytes, a binary file, a 1-D uint8 array, or a
    PIL image opened from a .ugc file."""
    if isinstance(source, bytes):
        return source
    if isinstance(source, (bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim != 1:
            raise FormatError(
                f"decode takes a .ugc file's bytes as a 1-D uint8 array, not {source.dtype}"
                f"{list(source.shape)} (pixels are for encode)"
            )
        return source.tobytes()
    if isinstance(source, Image.Image):
        data = getattr(source, "ugc_data", None)  # set by ugicm_codec.pillow
        if data is None:
            raise FormatError(
                f"a {source.format or 'decoded'} image, not one opened from a .ugc file "
                "(encode makes .ugc files from images)"
            )
        return data
    if hasattr(source, "read"):
        return _read_stream(source, FormatError)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            return path.read_bytes()
        except IsADirectoryError:
            raise UgicmError(f"{path} is a directory") from None
        except OSError as e:
            raise UgicmError(f"cannot read {path}: {e.strerror or e}") from None
    raise FormatError(f"cannot decode a {type(source).__name__}: give a .ugc file's path or bytes")
