"""The rate arguments of an encode, one place for the library, the CLI and the Ray path (no torch)."""

from __future__ import annotations

RATE_ARGUMENTS = ("quality", "target_bpp", "target_size", "target_psnr")


def chosen_rate(spell=str, **given) -> dict:
    """The rate arguments that were given (``RATE_ARGUMENTS``, None meaning not given), as a dict
    for ``Codec.encode``. ValueError when more than one was: the message names them as ``spell``
    writes a name (a command line spells them as options)."""
    rate = {k: v for k, v in given.items() if v is not None}
    if len(rate) > 1:
        raise ValueError("give one of " + " and ".join(map(spell, rate)) + ", not more")
    return rate
