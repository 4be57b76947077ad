"""Where the project's read-only shared inputs are looked for: one function, used by every module.

The shared folder holds what the repository does not ship: test images (``data/kodak``), training
and validation images (``data/train``, ``data/val``), the downstream task models (``models``) and
published rate-distortion figures (``anchors``). Nothing there is copied into the repository, and
every use has to cope with it being absent.

``shared_dir()`` answers, in this order:

1. ``$UGICM_SHARED``, when it is set (used as given, even if it does not exist, so that a wrong
   setting shows up as "not found" rather than silently falling back);
2. ``../shared`` relative to the working directory, when that is a directory (a checkout run from
   its root, as CI and the README's commands are);
3. ``shared`` beside the repository root this package was imported from (an editable install run
   from elsewhere); this path may not exist, for example in an installed wheel.
"""

from __future__ import annotations

import os
from pathlib import Path

ENVIRONMENT_VARIABLE = "UGICM_SHARED"


def shared_dir() -> Path:
    """The shared-inputs folder (see the module docstring for the order); it may not exist."""
    given = os.environ.get(ENVIRONMENT_VARIABLE)
    if given:
        return Path(given).expanduser()
    beside_cwd = Path.cwd().parent / "shared"
    if beside_cwd.is_dir():
        return beside_cwd
    return Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path inside the shared folder, e.g. ``shared_path("data", "kodak")``."""
    return shared_dir().joinpath(*parts)


SPELLING = "../shared"  # how configuration files name the shared folder, wherever it is found


def resolve(path: str) -> str:
    """A configured path with the shared folder's spelling (``../shared/data/train``, as the training
    configurations write it) mapped to where ``shared_dir()`` finds that folder; other paths as given."""
    text = str(path)
    if text == SPELLING or text.startswith(SPELLING + "/"):
        return str(shared_dir().joinpath(*text[len(SPELLING) :].split("/")[1:]))
    return text
