"""A Pillow plugin for .ugc files: ``import ugicm_codec.pillow`` and Pillow reads and writes them.

    >>> import ugicm_codec.pillow
    >>> from PIL import Image
    >>> im = Image.open("photo.ugc")        # reads the header only
    >>> im.size, im.info["rate_level"]       # header fields, no decode yet
    >>> im.prefer = "machine"                # optional, before the pixels are used: human by default
    >>> im.convert("RGB").save("photo.png")  # the decode happens here, once
    >>> Image.open("photo.png").save("again.ugc", quality=60)

Opening parses and checks the header; the pixels are decoded on first use (``load()``) at the
image's preference (``im.prefer``, default ``DEFAULTS["prefer"]``: human). One model is loaded
per process, on first decode or encode; ``configure(weights=..., device=..., prefer=...)``
changes which. Saving takes ``quality`` (0-100), or one of ``target_bpp``, ``target_size``,
``target_psnr``, plus ``refine_steps`` and ``strip`` (leave out ICC and EXIF), as ``ugicm encode``.

Pillow (13 at the time of writing) has no entry point through which an installed package could
register a format, so the import is needed, as for pillow-heif or pillow-avif-plugin.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageFile

from . import container
from .errors import UgicmError
from .rates import RATE_ARGUMENTS

FORMAT = "UGC"
MIME = "image/x-ugc"
EXTENSION = ".ugc"

# What images opened or saved through Pillow are coded with; change it with ``configure``.
DEFAULTS: dict = {"prefer": "human", "weights": None, "device": "auto", "threads": None}
_codecs: dict = {}  # (weights, device, threads) -> Codec, so the model loads once per process


def configure(
    *,
    prefer: str | float | None = None,
    weights: str | Path | None = None,
    device: str | None = None,
    threads: int | None = None,
) -> None:
    """Sets the defaults for images opened or saved from now on: the preference a decode uses
    (human, machine or a number in [0, 1]), the weights (a file or directory; None: the shipped
    model), the device and the CPU threads."""
    if prefer is not None:
        from .preferences import parse_preference

        parse_preference(prefer)  # a bad value is refused here, not at the first decode
        DEFAULTS["prefer"] = prefer
    if weights is not None:
        DEFAULTS["weights"] = weights
    if device is not None:
        DEFAULTS["device"] = device
    if threads is not None:
        DEFAULTS["threads"] = threads


def codec():
    """This process's Codec for the current defaults (loaded on first use)."""
    key = (str(DEFAULTS["weights"]) if DEFAULTS["weights"] else None, DEFAULTS["device"], DEFAULTS["threads"])
    if key not in _codecs:
        from .codec import Codec

        _codecs[key] = Codec(
            weights=DEFAULTS["weights"], device=DEFAULTS["device"], threads=DEFAULTS["threads"]
        )
    return _codecs[key]


def _accept(prefix: bytes) -> bool:
    return container.looks_like_ugc(prefix)


class UgcImageFile(ImageFile.ImageFile):
    """A .ugc file: the header on open, the pixels decoded on ``load()`` at ``self.prefer``."""

    format = FORMAT
    format_description = "ugicm learned image codec"

    def _open(self) -> None:
        data = self.fp.read()
        # A file that starts like a .ugc file but is damaged raises FormatError with its reason,
        # rather than Pillow's "cannot identify image file".
        f = container.parse(data)
        self.ugc_data = data
        self.ugc_file = f
        self.prefer = DEFAULTS["prefer"]
        self._size = (f.width, f.height)
        self._mode = f.colour_mode + ("A" if f.alpha is not None else "")
        self.info.update(container.describe(f, len(data)))
        if f.icc_profile:
            self.info["icc_profile"] = f.icc_profile
        if f.exif:
            self.info["exif"] = f.exif
        self._decoded = False
        self.tile = []

    def load(self):
        if not self._decoded:
            try:
                pil = codec().decode(self.ugc_file, self.prefer)
            except ValueError as e:  # a preference outside [0, 1]
                raise ValueError(f"im.prefer: {e}") from None
            self._decoded = True
            self.info["prefer"] = self.prefer
            if self.fp and self._exclusive_fp:
                self.fp.close()  # the whole file was read on open
            self.fp = io.BytesIO(pil.tobytes())
            self.tile = [ImageFile._Tile("raw", (0, 0) + self.size, 0, (pil.mode, 0, 1))]
        return super().load()


def open(fp, prefer: str | float = None, **kwargs) -> UgcImageFile:  # noqa: A001 - as Image.open
    """``Image.open`` for a .ugc file with a preference of its own."""
    im = Image.open(fp, formats=[FORMAT], **kwargs)
    if prefer is not None:
        from .preferences import parse_preference

        parse_preference(prefer)
        im.prefer = prefer
    return im


def _save(im: Image.Image, fp, filename) -> None:
    options = im.encoderinfo
    rate = {k: options[k] for k in RATE_ARGUMENTS if options.get(k) is not None}
    try:
        data = codec().encode(
            im,
            keep_metadata=not options.get("strip", False),
            refine_steps=int(options.get("refine_steps", 0)),
            **rate,
        )
    except UgicmError as e:
        raise OSError(f"cannot write .ugc: {e}") from None
    fp.write(data)


Image.register_open(FORMAT, UgcImageFile, _accept)
Image.register_save(FORMAT, _save)
Image.register_extension(FORMAT, EXTENSION)
Image.register_mime(FORMAT, MIME)
