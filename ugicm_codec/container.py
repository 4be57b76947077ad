"""The .ugc container: build and parse, defensively. No torch here (``ugicm info`` stays fast).

The byte-level specification is formats/ugc.md; this module is its reference implementation.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import construct as cs

from .errors import FormatError, LimitError

MAGIC = b"\x89UGC\r\n\x1a\n"
VERSION = 1
DEFAULT_MAX_PIXELS = 1 << 28  # 268 MP; override with --max-pixels
LATENT_STRIDE = 16  # image pixels per y sample, per side
PAD_MULTIPLE = 64  # image pixels per z sample, per side

DEFAULT_TILE = 16  # z samples per entropy tile side (1024 pixels)

COLOUR_MODES = {"RGB": 0, "L": 1}

# Chunk types whose first letter is upper case are critical: a reader that does not know one
# must refuse the file. Lower case first letters mark ancillary chunks a reader may skip.
CHUNK_TILE = b"TILE"  # one per entropy tile, raster order: z stream length, z stream, y stream
CHUNK_ALPHA = b"ALPH"  # zlib-compressed 8-bit alpha plane, lossless
CHUNK_ICC = b"iCCP"  # ICC profile of the source image
CHUNK_EXIF = b"eXIf"  # EXIF of the source image (orientation already applied to the pixels)
CHUNK_RESIDUAL = b"rESI"  # the residual layer of the human decode (residual.py), above the ladder
KNOWN_CRITICAL = {CHUNK_TILE, CHUNK_ALPHA}
REPEATABLE = {CHUNK_TILE}

_CHUNK = cs.Struct(
    "type" / cs.Bytes(4),
    "data" / cs.Prefixed(cs.Int32ub, cs.GreedyBytes),
)

_TILE = cs.Struct(
    "z" / cs.Prefixed(cs.Int32ub, cs.GreedyBytes),
    "y" / cs.GreedyBytes,
)

_BODY = cs.Struct(
    "magic" / cs.Const(MAGIC),
    "version" / cs.Int8ub,
    "flags" / cs.Int8ub,
    "model_id" / cs.PascalString(cs.Int8ub, "ascii"),
    "weights_digest" / cs.Bytes(8),
    "width" / cs.Int32ub,
    "height" / cs.Int32ub,
    "colour_mode" / cs.Int8ub,
    "rate_level" / cs.Float32b,
    "y_height" / cs.Int16ub,
    "y_width" / cs.Int16ub,
    "z_height" / cs.Int16ub,
    "z_width" / cs.Int16ub,
    "tile" / cs.Int16ub,
    "chunks" / cs.PrefixedArray(cs.Int32ub, _CHUNK),
    cs.Terminated,
)

HEADER_MIN = len(MAGIC) + 2 + 1 + 8 + 4 + 4 + 1 + 4 + 8 + 2 + 4


@dataclass
class UgcFile:
    model_id: str
    weights_digest: bytes
    width: int
    height: int
    colour_mode: str
    rate_level: float
    y_shape: tuple[int, int]
    z_shape: tuple[int, int]
    tiles: list[tuple[bytes, bytes]]  # (z stream, y stream) per entropy tile, raster order
    tile: int = DEFAULT_TILE  # entropy tile side in z samples
    alpha: bytes | None = None  # zlib-compressed alpha plane
    icc_profile: bytes | None = None
    exif: bytes | None = None
    residual: bytes | None = None  # the residual layer's payload (``residual``)
    extra_chunks: dict[bytes, bytes] = field(default_factory=dict)  # ancillary, unknown
    version: int = VERSION
    flags: int = 0

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def tile_grid(self) -> list[tuple[int, int, int, int]]:
        """(z_top, z_left, z_height, z_width) of every entropy tile, raster order."""
        return tile_grid(self.z_shape, self.tile)

    def chunk_sizes(self) -> dict[str, int]:
        sizes = {"TILE": sum(4 + len(z) + len(y) for z, y in self.tiles)}
        for name, value in (
            (CHUNK_ALPHA, self.alpha),
            (CHUNK_ICC, self.icc_profile),
            (CHUNK_EXIF, self.exif),
            (CHUNK_RESIDUAL, self.residual),
        ):
            if value is not None:
                sizes[name.decode()] = len(value)
        sizes.update({k.decode("latin-1"): len(v) for k, v in self.extra_chunks.items()})
        return sizes


def tile_grid(z_shape: tuple[int, int], tile: int) -> list[tuple[int, int, int, int]]:
    zh, zw = z_shape
    return [
        (top, left, min(tile, zh - top), min(tile, zw - left))
        for top in range(0, zh, tile)
        for left in range(0, zw, tile)
    ]


def latent_shapes(width: int, height: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(y_shape, z_shape) for an image of this size, padded to a multiple of 64."""
    ph = -(-height // PAD_MULTIPLE) * PAD_MULTIPLE
    pw = -(-width // PAD_MULTIPLE) * PAD_MULTIPLE
    return (ph // LATENT_STRIDE, pw // LATENT_STRIDE), (ph // PAD_MULTIPLE, pw // PAD_MULTIPLE)


def build(f: UgcFile) -> bytes:
    if f.colour_mode not in COLOUR_MODES:
        raise ValueError(f"unknown colour mode {f.colour_mode!r}")
    chunks = [dict(type=CHUNK_TILE, data=_TILE.build(dict(z=z, y=y))) for z, y in f.tiles]
    known = (
        (CHUNK_ALPHA, f.alpha),
        (CHUNK_ICC, f.icc_profile),
        (CHUNK_EXIF, f.exif),
        (CHUNK_RESIDUAL, f.residual),
    )
    for name, value in known:
        if value is not None:
            chunks.append(dict(type=name, data=value))
    chunks += [dict(type=t, data=d) for t, d in f.extra_chunks.items()]
    body = _BODY.build(
        dict(
            magic=MAGIC,
            version=f.version,
            flags=f.flags,
            model_id=f.model_id,
            weights_digest=f.weights_digest,
            width=f.width,
            height=f.height,
            colour_mode=COLOUR_MODES[f.colour_mode],
            rate_level=f.rate_level,
            y_height=f.y_shape[0],
            y_width=f.y_shape[1],
            z_height=f.z_shape[0],
            z_width=f.z_shape[1],
            tile=f.tile,
            chunks=chunks,
        )
    )
    return body + zlib.crc32(body).to_bytes(4, "big")


def looks_like_ugc(data: bytes) -> bool:
    return data[: len(MAGIC)] == MAGIC


# Leading bytes of the images most often handed to the decoder by mistake: a hint, not a check.
_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)


def image_format(data: bytes) -> str | None:
    """The image format ``data`` starts like (PNG, JPEG, WebP, GIF, TIFF, BMP), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for signature, name in _IMAGE_SIGNATURES if data.startswith(signature)), None)


def parse(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> UgcFile:
    """Parses and validates a whole .ugc file. Raises FormatError / LimitError, nothing else."""
    if not looks_like_ugc(data):
        kind = image_format(data)
        hint = f"; it is a {kind} image, which ugicm encode compresses" if kind else ""
        raise FormatError(f"not a .ugc file (bad magic{hint})")
    if len(data) < HEADER_MIN + 4:
        raise FormatError(f"truncated .ugc file ({len(data)} bytes)")
    body, stored_crc = data[:-4], int.from_bytes(data[-4:], "big")
    if zlib.crc32(body) != stored_crc:
        raise FormatError("corrupt or truncated .ugc file (CRC32 mismatch)")
    version = body[len(MAGIC)]
    if version != VERSION:
        raise FormatError(f".ugc format version {version} is not supported (this reader: {VERSION})")
    try:
        raw = _BODY.parse(body)
    except (cs.ConstructError, UnicodeDecodeError, ValueError) as e:
        raise FormatError(f"malformed .ugc file ({type(e).__name__})") from None
    return _validate(raw, max_pixels)


def _validate(raw, max_pixels: int) -> UgcFile:
    if raw.width < 1 or raw.height < 1:
        raise FormatError(f"invalid image size {raw.width}x{raw.height}")
    if raw.width * raw.height > max_pixels:
        raise LimitError(
            f"image of {raw.width}x{raw.height} pixels exceeds the limit of {max_pixels} pixels "
            "(see --max-pixels)"
        )
    y_shape, z_shape = latent_shapes(raw.width, raw.height)
    if (raw.y_height, raw.y_width) != y_shape or (raw.z_height, raw.z_width) != z_shape:
        raise FormatError("latent shapes do not match the image size")
    modes = {v: k for k, v in COLOUR_MODES.items()}
    if raw.colour_mode not in modes:
        raise FormatError(f"unknown colour mode {raw.colour_mode}")
    if not (raw.rate_level == raw.rate_level) or not 0.0 <= raw.rate_level <= 255.0:
        raise FormatError(f"invalid rate level {raw.rate_level}")
    if raw.tile < 1:
        raise FormatError("invalid entropy tile size 0")
    chunks: dict[bytes, bytes] = {}
    tiles: list[tuple[bytes, bytes]] = []
    for chunk in raw.chunks:
        t = bytes(chunk.type)
        if t in chunks:
            raise FormatError(f"duplicate chunk {t.decode('latin-1')!r}")
        if t[:1].isupper() and t not in KNOWN_CRITICAL:
            raise FormatError(f"unknown critical chunk {t.decode('latin-1')!r}")
        if t == CHUNK_TILE:
            try:
                tile = _TILE.parse(chunk.data)
            except cs.ConstructError:
                raise FormatError(f"malformed tile {len(tiles)}") from None
            tiles.append((bytes(tile.z), bytes(tile.y)))
        else:
            chunks[t] = bytes(chunk.data)
    expected = len(tile_grid(z_shape, raw.tile))
    if len(tiles) != expected:
        raise FormatError(f"file has {len(tiles)} tiles, its header needs {expected}")
    known = {CHUNK_ALPHA, CHUNK_ICC, CHUNK_EXIF, CHUNK_RESIDUAL}
    return UgcFile(
        model_id=raw.model_id,
        weights_digest=bytes(raw.weights_digest),
        width=raw.width,
        height=raw.height,
        colour_mode=modes[raw.colour_mode],
        rate_level=float(raw.rate_level),
        y_shape=y_shape,
        z_shape=z_shape,
        tiles=tiles,
        tile=raw.tile,
        alpha=chunks.get(CHUNK_ALPHA),
        icc_profile=chunks.get(CHUNK_ICC),
        exif=chunks.get(CHUNK_EXIF),
        residual=chunks.get(CHUNK_RESIDUAL),
        extra_chunks={k: v for k, v in chunks.items() if k not in known},
        version=raw.version,
        flags=raw.flags,
    )


def describe(f: UgcFile, file_size: int) -> dict:
    """Plain-data summary of a parsed file, as ``ugicm info --json`` prints it."""
    return {
        "format_version": f.version,
        "model": f.model_id,
        "weights_digest": f.weights_digest.hex(),
        "width": f.width,
        "height": f.height,
        "colour_mode": f.colour_mode,
        "rate_level": round(f.rate_level, 6),
        "y_shape": list(f.y_shape),
        "z_shape": list(f.z_shape),
        "tiles": len(f.tiles),
        "tile_pixels": f.tile * PAD_MULTIPLE,
        "alpha": f.alpha is not None,
        "bytes": file_size,
        "bpp": round(file_size * 8 / f.pixels, 6),
        "chunks": f.chunk_sizes(),
        **({} if f.residual is None else {"residual_step": _residual_step(f.residual)}),
    }


def _residual_step(payload: bytes) -> float | None:
    """The residual layer's quantiser step, None when its header is damaged (the chunk is
    ancillary: ``info`` reports the rest of the file)."""
    from .residual import describe

    try:
        return describe(payload)["step"]
    except FormatError:
        return None
