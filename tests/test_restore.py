"""The restore decode (``--prefer restore``): its add-on weights, its training and what it must
leave alone, on the golden tiny model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import GOLDEN, load_script
from ugicm_codec.degradations import (
    KINDS,
    Degradation,
    disk_kernel,
    image_rng,
    motion_kernel,
    parse_degradation,
    random_degradation,
)
from ugicm_codec.errors import EXIT_WEIGHTS


def _weights_with_restore(tmp_path, perturb: bool):
    """A copy of the golden tiny weights with a restore add-on: zero-initialised (an untrained
    restore decode) or with its blocks moved off zero, as training moves them."""
    import torch

    from ugicm_codec.weights import export_restore, load_model, locate

    folder = tmp_path / "weights"
    shutil.copytree(GOLDEN / "tiny", folder)
    model = load_model(locate(folder)).attach_restore()
    if perturb:
        g = torch.Generator().manual_seed(0)
        for name, p in model.named_parameters():
            if name in model.restore_parameter_names():
                p.data.add_(0.05 * torch.randn(p.shape, generator=g))
    info = locate(folder)
    name = f"{info.name}.restore.safetensors"
    digest = export_restore(model, folder / name)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["models"][info.name]["restore"] = {"file": name, "sha256": digest}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _golden(name: str) -> np.ndarray:
    return np.asarray(Image.open(GOLDEN / name).convert("RGB"))


def test_the_restore_decode_leaves_the_human_and_machine_decodes_bit_identical(tmp_path):
    from ugicm_codec.codec import Codec

    codec = Codec(weights=_weights_with_restore(tmp_path, perturb=True), device="cpu", precision="float32")
    data = (GOLDEN / "tiny-q30.ugc").read_bytes()
    restored, _ = codec.decode_array(data, prefer="restore")  # attaches the add-on first
    assert codec.model.has_restore
    for prefer in ("human", "machine"):
        decoded, _ = codec.decode_array(data, prefer=prefer)
        assert np.array_equal(decoded, _golden(f"tiny-q30.{prefer}.png")), prefer
    assert not np.array_equal(restored, _golden("tiny-q30.human.png"))
    fast = Codec(weights=codec.info.path.parent, device="cpu")  # the default precision and tiles
    assert np.abs(fast.decode_array(data, prefer="restore")[0].astype(int) - restored).max() <= 2


def test_ugicm_decode_prefer_restore_writes_the_restore_decode(tmp_path):
    from click.testing import CliRunner

    from ugicm_codec.cli import main
    from ugicm_codec.codec import Codec

    weights = _weights_with_restore(tmp_path, perturb=True)
    out = tmp_path / "r.png"
    args = ["decode", str(GOLDEN / "tiny-q30.ugc"), "--prefer", "restore", "--weights", str(weights)]
    r = CliRunner().invoke(main, args + ["-o", str(out), "--precision", "float32"])
    assert r.exit_code == 0, r.output
    assert "prefer restore" in r.output
    want, _ = Codec(weights=weights, device="cpu", precision="float32").decode_array(
        (GOLDEN / "tiny-q30.ugc").read_bytes(), prefer="restore"
    )
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), want)


def test_an_untrained_restore_decode_is_the_human_decode(tmp_path):
    from ugicm_codec.codec import Codec

    codec = Codec(weights=_weights_with_restore(tmp_path, perturb=False), device="cpu", precision="float32")
    restored, _ = codec.decode_array((GOLDEN / "tiny-q90.ugc").read_bytes(), prefer="restore")
    assert np.array_equal(restored, _golden("tiny-q90.human.png"))


def test_restore_without_an_add_on_is_refused_before_any_work(tmp_path):
    from ugicm_codec.codec import Codec
    from ugicm_codec.errors import WeightsError

    codec = Codec(weights=GOLDEN / "tiny", device="cpu")
    with pytest.raises(WeightsError, match="no restore decode"):
        codec.decode((GOLDEN / "tiny-q30.ugc").read_bytes(), prefer="restore")
    out = tmp_path / "r.png"
    probe = (
        "import sys, runpy; sys.argv = ['ugicm'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('ugicm_codec.cli', run_name='__main__')\n"
        "finally:\n    print('torch' in sys.modules, file=sys.stderr)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe, "decode", str(GOLDEN / "tiny-q30.ugc"), "--prefer", "restore"]
        + ["--weights", str(GOLDEN / "tiny"), "-o", str(out), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == EXIT_WEIGHTS
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("ugicm: error:") and "no restore decode" in lines[0]
    assert lines[-1] == "False"  # refused before torch was imported
    assert not out.exists()


def test_restore_training_resumes_and_exports_an_add_on(tmp_path):
    import torch

    from ugicm_codec.codec import Codec
    from ugicm_codec.training.restore import RestoreFit, fit

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)).save(images / f"{i}.png")
    torch.manual_seed(0)
    folder = tmp_path / "weights"
    shutil.copytree(GOLDEN / "tiny", folder)
    settings = RestoreFit(
        init=folder,
        run_dir=tmp_path / "run",
        data=[str(images)],
        val=str(images),
        crop=64,
        batch_size=2,
        semantic_weight=0.0,
        max_steps=2,
        log_every=1,
        threads=1,
        val_images=2,
        lr=1e-2,
    )
    assert fit(settings) == 2
    settings.max_steps = 3
    assert fit(settings) == 3  # resumed from last.pt
    logs = [json.loads(line) for line in (tmp_path / "run" / "logs.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [0, 1, 2, 3]
    assert set(logs[-1]["val_gain_db"]) == {"noise-15", "noise-30"}  # one crop per degradation

    export = load_script("export_weights.py")
    digest = export.export_restore_addon(tmp_path / "run" / "last.pt", folder)
    assert export.export_restore_addon(tmp_path / "run" / "last.pt", folder) == digest  # deterministic
    entry = json.loads((folder / "manifest.json").read_text())["models"]["ugicm-hp-tiny"]
    assert entry["restore"]["sha256"] == digest and entry["restore"]["steps"] == 3
    codec = Codec(weights=folder, device="cpu", precision="float32")
    data = (GOLDEN / "tiny-q30.ugc").read_bytes()
    assert np.array_equal(codec.decode_array(data, "human")[0], _golden("tiny-q30.human.png"))
    assert not np.array_equal(codec.decode_array(data, "restore")[0], _golden("tiny-q30.human.png"))
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    state["config"]["init_note"] = "other weights (sha256 0123456789abcdef)"
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(SystemExit, match="did not train on these weights"):
        export.export_restore_addon(tmp_path / "other.pt", folder)


def test_the_restore_figure_shows_four_labelled_crops(tmp_path):
    figure = load_script("restore_figure.py")
    weights = _weights_with_restore(tmp_path, perturb=True)
    out = tmp_path / "figure.png"
    figure.main([str(GOLDEN / "source.png"), "--weights", str(weights), "--box", "8,8,48", "--out", str(out)])
    with Image.open(out) as im:
        assert im.size == (4 * 48 + 3 * 4, 48 + 16)


@pytest.mark.parametrize("kind", KINDS)
def test_every_degradation_changes_the_image_and_is_reproducible(kind):
    rgb = np.asarray(Image.open(GOLDEN / "source.png").convert("RGB"))
    level = {"noise": 20, "poisson": 30, "defocus": 2, "motion": 9, "lowlight": 0.25, "jpeg": 20}[kind]
    d = Degradation(kind, level)
    a = d.apply(rgb, image_rng(0, "source.png", d))
    b = d.apply(rgb, image_rng(0, "source.png", d))
    assert a.dtype == np.uint8 and a.shape == rgb.shape
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - rgb).mean() > 1.0
    if kind == "lowlight":
        assert a.mean() < 0.6 * rgb.mean()


def test_degradation_parsing_and_kernels():
    assert parse_degradation("Noise:25") == Degradation("noise", 25.0)
    assert parse_degradation("defocus:1.5").label == "defocus-1.5"
    for bad in ("noise", "noise:x", "fog:2", "noise:-1", "noise:nan"):
        with pytest.raises(ValueError):
            parse_degradation(bad)
    for k in (disk_kernel(0.8), disk_kernel(3), motion_kernel(9, 0.7), motion_kernel(1, 0)):
        assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
        assert abs(k.sum() - 1) < 1e-12 and (k >= 0).all()
    kinds = {random_degradation(np.random.default_rng(i)).kind for i in range(200)}
    assert kinds == set(KINDS) | {"clean"}
