"""Mutations of .ugc files and the check that every one ends in a documented outcome.

Used by tests/test_fuzz.py (a short hypothesis run) and scripts/fuzz_ugc.py (the long run).
A case may decode to an image or raise a UgicmError; anything else — another exception, a crash,
a hang — is a bug.
"""

from __future__ import annotations

import random
import zlib

from . import container
from .errors import UgicmError

MUTATIONS = ("truncate", "bitflip", "length", "random", "payload", "header_field", "splice")


def refresh_crc(data: bytes) -> bytes:
    """Recomputes the trailing CRC so a mutation reaches the parser, as a crafted file would."""
    body = data[:-4]
    return body + zlib.crc32(body).to_bytes(4, "big")


def _chunk_length_offsets(data: bytes) -> list[int]:
    """Offsets of every 4-byte chunk length field (after the 4-byte type) of a well-formed file."""
    offsets = []
    n = data[10]
    pos = 46 + n
    end = len(data) - 4
    while pos + 8 <= end:
        offsets.append(pos + 4)
        length = int.from_bytes(data[pos + 4 : pos + 8], "big")
        pos += 8 + length
    return offsets


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(MUTATIONS)
    b = bytearray(data)
    if kind == "truncate":
        return kind, bytes(b[: rng.randrange(len(b))])
    if kind == "bitflip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return kind, bytes(b) if rng.random() < 0.5 else refresh_crc(bytes(b))
    if kind == "length":
        offsets = _chunk_length_offsets(data) or [len(b) - 8]
        at = rng.choice(offsets)
        value = rng.choice(
            [
                0,
                1,
                2**31 - 1,
                2**32 - 1,
                rng.randrange(2**32),
                int.from_bytes(b[at : at + 4], "big") + rng.randint(-9, 9),
            ]
        )
        b[at : at + 4] = (value % 2**32).to_bytes(4, "big")
        return kind, refresh_crc(bytes(b))
    if kind == "random":
        size = rng.randrange(0, 2 * len(b))
        junk = bytes(rng.randrange(256) for _ in range(size))
        return kind, (container.MAGIC + junk) if rng.random() < 0.7 else junk
    if kind == "payload":
        f = container.parse(data)
        tiles = [
            (bytes(rng.randrange(256) for _ in z), bytes(rng.randrange(256) for _ in y))
            if rng.random() < 0.7
            else (z, y[: rng.randrange(len(y) + 1)])
            for z, y in f.tiles
        ]
        return kind, container.build(container.UgcFile(**{**f.__dict__, "tiles": tiles}))
    if kind == "header_field":
        n = b[10]
        at = rng.choice([8, 9, 10, 19 + n, 23 + n, 27 + n, 28 + n, 32 + n, 36 + n, 40 + n, 42 + n])
        width = 4 if at in (19 + n, 23 + n, 28 + n, 42 + n) else 2 if at in (32 + n, 36 + n, 40 + n) else 1
        b[at : at + width] = bytes(rng.choice([0x00, 0xFF, rng.randrange(256)]) for _ in range(width))
        return kind, refresh_crc(bytes(b))
    # splice: a piece of the file repeated or dropped
    i, j = sorted(rng.randrange(len(b)) for _ in range(2))
    piece = bytes(b[i:j])
    out = bytes(b[:i]) + piece + bytes(b[i:]) if rng.random() < 0.5 else bytes(b[:i]) + bytes(b[j:])
    return kind, refresh_crc(out) if len(out) > 4 else out


def outcome(codec, data: bytes) -> str:
    """'decoded', or the name of the UgicmError subclass raised. Other exceptions propagate."""
    try:
        codec.decode_picture(data, "human")
    except UgicmError as e:
        return type(e).__name__
    return "decoded"
