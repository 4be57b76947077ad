"""The shared inputs evaluation reads (test images, published anchors, downstream models).

Where the shared folder is looked for is decided once, by ``ugicm_codec.shared.shared_dir``; these
are its subfolders, resolved when this module is first imported.
"""

from __future__ import annotations

from ..shared import shared_dir

SHARED_DIR = shared_dir()
KODAK_DIR = SHARED_DIR / "data" / "kodak"
KODAK_ANCHORS_DIR = SHARED_DIR / "anchors" / "kodak"
MODELS_DIR = SHARED_DIR / "models"
