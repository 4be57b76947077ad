"""Where the project's read-only shared inputs live: ``../shared`` next to the repository root.

It holds test images, published anchor figures and the downstream models. Nothing there is
copied into the repository; every use has to cope with it being absent.
"""

from __future__ import annotations

from pathlib import Path

SHARED_DIR = Path(__file__).resolve().parents[2].parent / "shared"
KODAK_DIR = SHARED_DIR / "data" / "kodak"
KODAK_ANCHORS_DIR = SHARED_DIR / "anchors" / "kodak"
MODELS_DIR = SHARED_DIR / "models"
