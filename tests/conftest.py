"""Shared fixtures. Tests that need ../shared skip with a message when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from ugicm_codec.shared import shared_dir

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "formats" / "golden"
SHARED = shared_dir()
KODAK = SHARED / "data" / "kodak"


def load_script(relative: str):
    """A maintainer script under scripts/ as a module, so that tests call its functions (its
    ``main(argv)`` included) in this process rather than running it."""
    import importlib.util

    path = ROOT / "scripts" / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def need_shared(path: Path = SHARED) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the project's shared data), which is absent here")
    return path


@pytest.fixture(scope="session")
def tiny_codec():
    import torch

    torch.set_num_threads(1)
    from ugicm_codec.codec import Codec

    return Codec(
        weights=GOLDEN / "tiny", device="cpu", precision="float32"
    )  # golden pixels: the reference decode


def default_pixels(ugc: Path, prefer: str = "human", weights: Path = GOLDEN / "tiny"):
    """The library's decode of ``ugc`` at the default precision on this hardware: what the Pillow
    plugin, the datasets, the CLI without ``--precision`` and Ray decode to. Where the CPU has no
    native bf16 it is the golden (float32 reference) decode; where it has, bf16 rounding may move
    some pixels by a level or two (formats/ugc.md, "Decode precision")."""
    from ugicm_codec.codec import Codec

    return Codec(weights=weights, device="cpu").decode_array(ugc.read_bytes(), prefer)[0]


@pytest.fixture(scope="session")
def default_codec():
    from ugicm_codec.codec import Codec
    from ugicm_codec.weights import package_weights_dir

    if not (package_weights_dir() / "manifest.json").exists():
        pytest.skip("no shipped weights in ugicm_codec/model_weights/")
    return Codec(device="cpu", precision="float32")  # golden pixels: the reference decode


@pytest.fixture(scope="session")
def source_image():
    from PIL import Image

    return Image.open(GOLDEN / "source.png").convert("RGB")


CONTEXT_ARCH = "ugicm-hpac-tiny-r10"
GROUPED_CONTEXT_ARCH = "ugicm-hpacg-tiny-r10"  # the same context, coded in channel groups


def grown_context_model(trained: bool, arch: str = CONTEXT_ARCH):
    """(the golden tiny model, it grown into ``arch``): with ``trained``, the context's
    refinements are moved off zero, as training does, so the context changes the coding."""
    import torch

    from ugicm_codec.models import build_model
    from ugicm_codec.weights import load_model, locate

    parent = load_model(locate(GOLDEN / "tiny"))
    model = build_model(arch)
    assert model.load_grown_state_dict(parent.state_dict()) > 0  # raises on any mismatch
    if trained:
        g = torch.Generator().manual_seed(0)
        groups = [*model.context.anchor_groups, *model.context.rest_groups]
        with torch.no_grad():
            for layer in [model.context.refine[-1]] + [r.refine[-1] for r in groups]:
                for p in layer.parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    model.update(force=True)
    return parent, model.eval().requires_grad_(False)


@pytest.fixture(scope="session")
def context_codec(tmp_path_factory):
    """A codec of the tiny context model, with entropy tiles of 2 z samples (several per image)."""
    from ugicm_codec.codec import Codec
    from ugicm_codec.weights import export

    path = tmp_path_factory.mktemp("context") / f"{CONTEXT_ARCH}.safetensors"
    export(grown_context_model(trained=True)[1], path)
    return Codec(weights=path, device="cpu", entropy_tile=2)
