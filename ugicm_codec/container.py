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

COLOUR_MODES = {"RGB": 0, "L": 1}

# Chunk types whose first letter is upper case are critical: a reader that does not know one
# must refuse the file. Lower case first letters mark ancillary chunks a reader may skip.
CHUNK_Z = b"ZSTR"  # entropy-coded hyper-latent z
CHUNK_Y = b"YSTR"  # entropy-coded latent y
KNOWN_CRITICAL = {CHUNK_Z, CHUNK_Y}

_CHUNK = cs.Struct(
    "type" / cs.Bytes(4),
    "data" / cs.Prefixed(cs.Int32ub, cs.GreedyBytes),
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
    "chunks" / cs.PrefixedArray(cs.Int8ub, _CHUNK),
    cs.Terminated,
)

HEADER_MIN = len(MAGIC) + 2 + 1 + 8 + 4 + 4 + 1 + 4 + 8 + 1


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
    chunks: dict[bytes, bytes] = field(default_factory=dict)
    version: int = VERSION
    flags: int = 0

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def z_string(self) -> bytes:
        return self.chunks[CHUNK_Z]

    @property
    def y_string(self) -> bytes:
        return self.chunks[CHUNK_Y]


def latent_shapes(width: int, height: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(y_shape, z_shape) for an image of this size, padded to a multiple of 64."""
    ph = -(-height // PAD_MULTIPLE) * PAD_MULTIPLE
    pw = -(-width // PAD_MULTIPLE) * PAD_MULTIPLE
    return (ph // LATENT_STRIDE, pw // LATENT_STRIDE), (ph // PAD_MULTIPLE, pw // PAD_MULTIPLE)


def build(f: UgcFile) -> bytes:
    if f.colour_mode not in COLOUR_MODES:
        raise ValueError(f"unknown colour mode {f.colour_mode!r}")
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
            chunks=[dict(type=t, data=d) for t, d in f.chunks.items()],
        )
    )
    return body + zlib.crc32(body).to_bytes(4, "big")


def looks_like_ugc(data: bytes) -> bool:
    return data[: len(MAGIC)] == MAGIC


def parse(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> UgcFile:
    """Parses and validates a whole .ugc file. Raises FormatError / LimitError, nothing else."""
    if not looks_like_ugc(data):
        raise FormatError("not a .ugc file (bad magic)")
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
    chunks: dict[bytes, bytes] = {}
    for chunk in raw.chunks:
        t = bytes(chunk.type)
        if t in chunks:
            raise FormatError(f"duplicate chunk {t.decode('latin-1')!r}")
        if t[:1].isupper() and t not in KNOWN_CRITICAL:
            raise FormatError(f"unknown critical chunk {t.decode('latin-1')!r}")
        chunks[t] = bytes(chunk.data)
    for required in (CHUNK_Z, CHUNK_Y):
        if required not in chunks:
            raise FormatError(f"missing chunk {required.decode()!r}")
    return UgcFile(
        model_id=raw.model_id,
        weights_digest=bytes(raw.weights_digest),
        width=raw.width,
        height=raw.height,
        colour_mode=modes[raw.colour_mode],
        rate_level=float(raw.rate_level),
        y_shape=y_shape,
        z_shape=z_shape,
        chunks=chunks,
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
        "bytes": file_size,
        "bpp": round(file_size * 8 / f.pixels, 6),
        "chunks": {t.decode("latin-1"): len(d) for t, d in f.chunks.items()},
    }
