"""Classic codecs, each through its own library at a ladder of quality settings: JPEG, WebP and
AVIF through Pillow, JPEG XL through imagecodecs (libjxl), HEVC through pillow-heif (libheif/x265).

The ladders were chosen so that on Kodak each codec's averaged curve runs from below 0.2 bits per
pixel to above 40 dB, overlapping the range learned codecs are compared in, the high-quality end
included. Rates are always taken
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

    def decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))


class JpegXL(Baseline):
    """JPEG XL through imagecodecs' libjxl binding (``pip install imagecodecs``)."""

    def unavailable_reason(self) -> str | None:
        try:
            import imagecodecs
        except ImportError:
            return "imagecodecs is not installed (pip install imagecodecs)"
        if not imagecodecs.JPEGXL.available:
            return "this imagecodecs was built without JPEG XL"
        return None

    def library(self) -> str:
        import imagecodecs

        return f"imagecodecs {imagecodecs.__version__} / {imagecodecs.jpegxl_version()}"

    def encode(self, rgb: np.ndarray, quality: int, threads: int = 1) -> bytes:
        import imagecodecs

        return bytes(
            imagecodecs.jpegxl_encode(
                np.ascontiguousarray(rgb), level=int(quality), numthreads=threads, **self.options
            )
        )

    def decode(self, data: bytes) -> np.ndarray:
        import imagecodecs

        return np.asarray(imagecodecs.jpegxl_decode(data))[..., :3]


class Heif(Baseline):
    """HEVC in HEIF through pillow-heif (libheif with x265; ``pip install pillow-heif``)."""

    def unavailable_reason(self) -> str | None:
        try:
            import pillow_heif
        except ImportError:
            return "pillow-heif is not installed (pip install pillow-heif)"
        if "x265" not in str(pillow_heif.libheif_info().get("encoders", {})):
            return "this pillow-heif has no HEVC (x265) encoder"
        return None

    def library(self) -> str:
        import pillow_heif

        info = pillow_heif.libheif_info()
        return f"pillow-heif {pillow_heif.__version__} / libheif {info['libheif']} / {info['HEIF']}"

    def encode(self, rgb: np.ndarray, quality: int, threads: int = 1) -> bytes:
        import pillow_heif

        buf = io.BytesIO()
        pillow_heif.from_bytes("RGB", (rgb.shape[1], rgb.shape[0]), np.ascontiguousarray(rgb).tobytes()).save(
            buf, format="HEIF", quality=int(quality), **self.options
        )
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        import pillow_heif

        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        return np.asarray(heif.to_pillow().convert("RGB"))


BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        # libjpeg defaults (4:2:0, baseline) plus Huffman optimisation, as `cjpeg -optimize` does.
        Baseline(
            "jpeg",
            "JPEG",
            ".jpg",
            "jpg",
            "libjpeg",
            (5, 10, 20, 30, 40, 50, 60, 70, 80, 90),
            {"optimize": True},
        ),
        # method 6 is libwebp's slowest, best-compressing effort level (cwebp -m 6).
        Baseline("webp", "WEBP", ".webp", "webp", "libwebp", (0, 10, 25, 40, 55, 70, 85, 95), {"method": 6}),
        # 4:2:0 at libavif's default speed 6 (Pillow's defaults).
        Baseline(
            "avif",
            "AVIF",
            ".avif",
            "avif",
            "libavif",
            (0, 15, 30, 45, 60, 75, 90),
            {"speed": 6, "subsampling": "4:2:0"},
        ),
        # libjxl at its default effort 7 (cjxl -e 7); `level` is cjxl's -q quality.
        JpegXL("jxl", "JXL", ".jxl", "", "libjxl", (5, 20, 40, 60, 75, 90, 95), {"effort": 7}),
        # x265 through libheif in 4:4:4, as BPG and the HEVC anchors code it.
        Heif("hevc", "HEIF", ".heic", "", "libheif", (5, 20, 35, 50, 65, 80), {"chroma": 444}),
    )
}


def get(name: str) -> Baseline:
    try:
        return BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}") from None
