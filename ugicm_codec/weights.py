"""Shipped weights: a safetensors file per model plus ``manifest.json``, package data in
``ugicm_codec/model_weights/`` (``weights/`` at the top of a source tree points there).

Weights are read with safetensors (no unpickling) and their SHA-256 is checked against the
manifest before use. The first 8 bytes of that digest go into every .ugc file, so a file made
with other weights is refused instead of being decoded into garbage.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import WeightsError

MANIFEST = "manifest.json"
DIGEST_BYTES = 8


PACKAGE_DATA = "model_weights"


def package_weights_dir() -> Path:
    """The weights shipped inside the package, found through importlib.resources, so that an
    install anywhere (a venv, --user, --prefix, --target) finds them beside the code that reads
    them. pip unpacks wheels, so this is a real directory that safetensors can open."""
    from importlib.resources import files

    return Path(str(files(__package__) / PACKAGE_DATA))


def weights_dirs() -> list[Path]:
    """Where weights are looked for, in order: $UGICM_WEIGHTS, the package's own data, and the
    install prefix's share/ugicm/weights (where releases before the package data put them)."""
    dirs = []
    if os.environ.get("UGICM_WEIGHTS"):
        dirs.append(Path(os.environ["UGICM_WEIGHTS"]))
    dirs.append(package_weights_dir())
    dirs.append(Path(sys.prefix) / "share" / "ugicm" / "weights")
    return dirs


@dataclass
class WeightsInfo:
    name: str  # architecture name
    path: Path
    sha256: str
    manifest: dict
    # the manifest's record of weights shipped before these, by the digest their files carry
    earlier: dict = field(default_factory=dict)

    @property
    def digest(self) -> bytes:
        return bytes.fromhex(self.sha256)[:DIGEST_BYTES]

    def where_earlier(self, digest: bytes) -> str | None:
        """How to get the earlier shipped weights whose files carry ``digest``, or None."""
        entry = self.earlier.get(digest.hex())
        if not entry or not entry.get("commit"):
            return None
        name = Path(entry["file"]).name
        path = entry.get("path", f"weights/{name}")  # weights/ until they became package data
        return (
            f"the weights that made it ({entry['architecture']}) were shipped in commit {entry['commit']}: "
            f"git show {entry['commit']}:{path} > {name}, then decode with --weights {name}"
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def locate(weights: str | Path | None = None) -> WeightsInfo:
    """Finds the weights to use: a .safetensors file, a directory with a manifest, or the default.

    A file given directly must sit next to a manifest that lists it, or carry its architecture in
    its safetensors metadata; either way its digest is computed and, when listed, checked.
    """
    if weights is not None:
        path = Path(weights)
        if path.is_dir():
            return _from_manifest_dir(path)
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        return _from_file(path)
    for d in weights_dirs():
        if (d / MANIFEST).is_file():
            return _from_manifest_dir(d)
    raise WeightsError(
        "no model weights found (looked in " + ", ".join(map(str, weights_dirs())) + "); "
        "pass --weights or set UGICM_WEIGHTS"
    )


def _read_manifest(directory: Path) -> dict:
    try:
        return json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise WeightsError(f"unreadable weights manifest {directory / MANIFEST}: {e}") from None


def _from_manifest_dir(directory: Path) -> WeightsInfo:
    manifest = _read_manifest(directory)
    name = manifest.get("default")
    entry = manifest.get("models", {}).get(name)
    if not entry:
        raise WeightsError(f"{directory / MANIFEST} names no default model")
    path = directory / entry["file"]
    if not path.is_file():
        raise WeightsError(f"weights file missing: {path}")
    return _checked(name, path, entry, manifest.get("earlier", {}))


def _from_file(path: Path) -> WeightsInfo:
    manifest = _read_manifest(path.parent) if (path.parent / MANIFEST).is_file() else {}
    for name, entry in manifest.get("models", {}).items():
        if entry.get("file") == path.name:
            return _checked(name, path, entry, manifest.get("earlier", {}))
    name = _metadata(path).get("architecture")
    if not name:
        raise WeightsError(f"{path} names no architecture and no manifest lists it")
    return WeightsInfo(name, path, _sha256(path), {"file": path.name})


def _checked(name: str, path: Path, entry: dict, earlier: dict) -> WeightsInfo:
    digest = _sha256(path)
    if entry.get("sha256") and entry["sha256"] != digest:
        raise WeightsError(
            f"weights file {path} does not match its manifest (sha256 {digest[:16]}…, "
            f"expected {entry['sha256'][:16]}…): altered or corrupt"
        )
    return WeightsInfo(name, path, digest, entry, earlier)


def _metadata(path: Path) -> dict:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises several types for a broken header
        raise WeightsError(f"unreadable weights file {path}: {e}") from None


def load_model(info: WeightsInfo):
    """Builds the architecture and loads the weights (float32 in memory)."""
    from safetensors.torch import load_file

    from .models import build_model

    try:
        model = build_model(info.name, initialise=False)  # every parameter comes from the file
    except KeyError as e:
        raise WeightsError(str(e.args[0])) from None
    try:
        state = load_file(str(info.path))
    except Exception as e:
        raise WeightsError(f"unreadable weights file {info.path}: {e}") from None
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise WeightsError(f"weights file {info.path} does not fit {info.name}: {first}") from None
    model.eval().requires_grad_(False)
    if model.gaussian_conditional._quantized_cdf.numel() == 0:
        raise WeightsError(f"weights file {info.path} lacks entropy coder tables")
    return model


def restore_path(info: WeightsInfo) -> Path:
    """The restore decode's add-on file for weights ``info``, checked against its manifest entry
    (``"restore": {"file", "sha256", ...}``): WeightsError if the weights have none. Torch-free,
    so a command can refuse ``--prefer restore`` before it loads a model."""
    entry = info.manifest.get("restore")
    if not entry:
        raise WeightsError(
            f"the weights {info.name} have no restore decode (no restore add-on in their manifest)"
        )
    path = info.path.parent / entry["file"]
    if not path.is_file():
        raise WeightsError(f"restore add-on missing: {path}")
    digest = _sha256(path)
    if entry.get("sha256") and entry["sha256"] != digest:
        raise WeightsError(f"restore add-on {path} does not match its manifest: altered or corrupt")
    return path


def load_restore(model, info: WeightsInfo) -> None:
    """Attaches the restore decode to ``model`` (made from ``info``) with its add-on's weights."""
    from safetensors.torch import load_file

    path = restore_path(info)
    try:
        state = load_file(str(path))
    except Exception as e:
        raise WeightsError(f"unreadable restore add-on {path}: {e}") from None
    try:
        model.load_restore_state({k: v.float() for k, v in state.items()})
    except ValueError as e:
        raise WeightsError(f"restore add-on {path} does not fit {info.name}: {e}") from None
    model.eval().requires_grad_(False)


def export_restore(model, path: Path | str) -> str:
    """Writes the restore decode's weights alone, in float16, as its add-on file; returns its
    SHA-256."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().cpu().half().contiguous() for k, v in model.restore_state().items()}
    tmp = path.with_suffix(".tmp")
    # One metadata key: safetensors writes a map of several in no fixed order, and the add-on's
    # digest must not change from one export to the next. Not "architecture": the add-on is not
    # weights that a --weights option could load.
    save_file(state, str(tmp), metadata={"restore_addon_for": model.arch.name})
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return _sha256(path)


def training_state(path: Path | str, map_location="cpu") -> dict:
    """A model state to train from, as ``{"model", "step", "config"}``: a training checkpoint
    (``.pt``, loaded without unpickling code) or shipped weights (a ``.safetensors`` file or a
    weights directory), whose manifest entry stands in for the checkpoint's step and config.

    Full checkpoints live outside the repository and may be lost with the machine; the shipped
    weights are then the state that training resumes from (float16 transforms, the optimizer
    restarted)."""
    import torch

    path = Path(path).expanduser()
    if path.suffix == ".pt":
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except (OSError, RuntimeError, EOFError) as e:
            raise WeightsError(f"unreadable checkpoint {path}: {e}") from None
    from safetensors.torch import load_file

    info = locate(path)
    try:
        state = load_file(str(info.path), device=str(map_location))
    except Exception as e:
        raise WeightsError(f"unreadable weights file {info.path}: {e}") from None
    entry = info.manifest
    teacher = entry.get("teacher")
    config = {
        "arch": info.name,
        "stage1_steps": entry.get("stage1_steps", 0),
        "batch_size": entry.get("batch_size"),
        "crop": entry.get("crop"),
        "train": entry.get("data", []),
        "semantic": teacher is not None,
        "teacher": teacher or "efficientnet-lite0",
        "semantic_weight": entry.get("semantic_weight"),
        "note": entry.get("note", ""),
        "init": f"{info.path} (sha256 {info.sha256[:16]})",
    }
    config.update({k: entry[k] for k in ("context_steps", "context_crops") if k in entry})
    return {
        "model": {k: v.float() if v.is_floating_point() else v for k, v in state.items()},
        "step": int(entry.get("steps", 0)),
        "config": config,
    }


def compact_state(state: dict) -> dict:
    """A model state as it is stored (shipped weights, device checkpoints): transforms in float16,
    the entropy model exact (its CDF tables, and likelihood bounds that float16 would zero)."""
    exact = ("entropy_bottleneck.", "gaussian_conditional.")
    return {k: v.half() if v.is_floating_point() and not k.startswith(exact) else v for k, v in state.items()}


def export(model, path: Path | str, half: bool = True) -> str:
    """Writes a model as safetensors: transforms in float16, the entropy model exact (float32 and
    int32 CDF tables, computed here once so every decoder uses the very same tables)."""
    from safetensors.torch import save_file

    path = Path(path)
    model = model.cpu().eval()
    model.update(force=True)
    state = model.state_dict()
    state = {k: v.contiguous() for k, v in (compact_state(state) if half else state).items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"architecture": model.arch.name})
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return _sha256(path)
