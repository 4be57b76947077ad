"""Classic codecs through Pillow (JPEG, WebP, AVIF), each at a ladder of quality settings.

The ladders were chosen so that on Kodak each codec's averaged curve runs from below 0.2 to above
1.5 bits per pixel, overlapping the range learned codecs are compared in. Rates are always taken
from the size of the encoded bytes, headers included.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, features


@dataclass(frozen=True)
class Baseline:
    name: str  # the curve name in results: "jpeg", "webp", "avif"
    pillow_format: str
    suffix: str
    feature: str  # Pillow feature that must be compiled in (features.check / features.version)
    library_name: str
    qualities: tuple[int, ...]
    options: dict = field(default_factory=dict)  # fixed encoder options, recorded with the results

    def unavailable_reason(self) -> str | None:
        if not features.check(self.feature):
            return f"this Pillow was built without {self.pillow_format} support"
        return None

    def library(self) -> str:
        """What actually encodes, for the record (e.g. 'Pillow 11.2 / libwebp 1.5.0')."""
        import PIL

        return f"Pillow {PIL.__version__} / {self.library_name} {features.version(self.feature)}"

    def encode(self, rgb: np.ndarray, quality: int, threads: int = 1) -> bytes:
        options = dict(self.options)
        if self.pillow_format == "AVIF":
            options["max_threads"] = threads
        buf = io.BytesIO()
        Image.fromarray(rgb, "RGB").save(buf, format=self.pillow_format, quality=int(quality), **options)
        return buf.getvalue()

    @staticmethod
    def decode(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))


BASELINES: dict[str, Baseline] = {
    b.name: b for b in (
        # libjpeg defaults (4:2:0, baseline) plus Huffman optimisation, as `cjpeg -optimize` does.
        Baseline("jpeg", "JPEG", ".jpg", "jpg", "libjpeg", (5, 10, 20, 30, 40, 50, 60, 70, 80, 90),
                 {"optimize": True}),
        # method 6 is libwebp's slowest, best-compressing effort level (cwebp -m 6).
        Baseline("webp", "WEBP", ".webp", "webp", "libwebp", (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90),
                 {"method": 6}),
        # 4:2:0 at libavif's default speed 6 (Pillow's defaults).
        Baseline("avif", "AVIF", ".avif", "avif", "libavif", (0, 10, 20, 30, 40, 50, 60, 70, 80),
                 {"speed": 6, "subsampling": "4:2:0"}),
    )
}


def get(name: str) -> Baseline:
    try:
        return BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}") from None
