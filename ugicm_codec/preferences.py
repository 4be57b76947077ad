"""The decode preference: between people (human, 0) and machine analytics (machine, 1), or
``restore``, the decode that estimates the clean image behind a degraded one (LL-ICM).

One place for the names and their parsing, shared by the library, the command line and the
evaluation. Importing this module imports nothing beyond the standard library, so that the
command line can answer a bad ``--prefer`` before it loads torch.
"""

from __future__ import annotations

PREFERENCES = {"human": 0.0, "machine": 1.0}
RESTORE = "restore"  # not a point between the two: a decode of its own
_NAMES = {beta: name for name, beta in PREFERENCES.items()}


def parse_preference(value: str | float) -> float | str:
    """'human' -> 0, 'machine' -> 1, a number in [0, 1], or 'restore' -> RESTORE (ValueError
    otherwise)."""
    if isinstance(value, str):
        if value.lower() == RESTORE:
            return RESTORE
        if value.lower() in PREFERENCES:
            return PREFERENCES[value.lower()]
        try:
            value = float(value)
        except ValueError:
            raise ValueError(
                f"preference must be human, machine, restore or a number in [0, 1], not {value!r}"
            ) from None
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise ValueError(f"preference must be in [0, 1], not {value}")
    return value


def preference_name(beta: float | str) -> str | None:
    """'human' for 0, 'machine' for 1, 'restore' for RESTORE, None for a value between."""
    if beta == RESTORE:
        return RESTORE
    return _NAMES.get(float(beta))


def preference_tag(beta: float | str, prefix: str = "p") -> str:
    """A short label for file names and reports: human, machine, or ``prefix`` + the number."""
    return preference_name(beta) or f"{prefix}{beta:g}"
