"""Shared fixtures. Tests that need ../shared skip with a message when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "formats" / "golden"
SHARED = ROOT.parent / "shared"
KODAK = SHARED / "data" / "kodak"


def need_shared(path: Path = SHARED) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the project's shared data), which is absent here")
    return path


@pytest.fixture(scope="session")
def tiny_codec():
    import torch

    torch.set_num_threads(1)
    from ugicm_codec.codec import Codec

    return Codec(weights=GOLDEN / "tiny", device="cpu")


@pytest.fixture(scope="session")
def default_codec():
    from ugicm_codec.codec import Codec
    from ugicm_codec.weights import weights_dirs

    if not (weights_dirs()[-2] / "manifest.json").exists():
        pytest.skip("no shipped weights in weights/")
    return Codec(device="cpu")


@pytest.fixture(scope="session")
def source_image():
    from PIL import Image

    return Image.open(GOLDEN / "source.png").convert("RGB")
