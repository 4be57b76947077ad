"""`ugicm eval --tasks restore`: degraded copies coded by ugicm (human and restore decodes) and by
WebP followed by classic restoration, scored against the clean images; its usage errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from ugicm_codec.cli import main

ARGS = [
    "--tasks",
    "restore",
    "--qualities",
    "50",
    "--baselines",
    "webp",
    "--baseline-qualities",
    "50,80",
    "--degradations",
    "noise:15,defocus:1.5",
    "--threads",
    "1",
]


def _photo(seed: int, size: int = 64) -> np.ndarray:
    """A smooth picture with edges (blur and noise must both show), deterministic."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(6 * x + seed), np.cos(5 * y), np.sin(4 * (x + y))], axis=2) * 80 + 128
    base[size // 3 : size // 2, :, :] += 60  # a bar: an edge to blur
    return np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("images")
    for i in range(2):
        Image.fromarray(_photo(i)).save(d / f"im{i}.png")
    return d


def _weights_dir(d, with_restore: bool):
    import torch

    from ugicm_codec.models import build_model
    from ugicm_codec.weights import export, export_restore

    torch.manual_seed(0)
    model = build_model("ugicm-hp-tiny")
    manifest_entry = {"file": "m.safetensors", "sha256": export(model, d / "m.safetensors")}
    if with_restore:
        model.attach_restore()
        conv = model.g_s.restorers[0].conv2.weight  # zero-initialised: perturb so restore != human
        with torch.no_grad():
            conv.copy_(torch.randn(conv.shape, generator=torch.Generator().manual_seed(1)) * 0.5)
        manifest_entry["restore"] = {
            "file": "r.safetensors",
            "sha256": export_restore(model, d / "r.safetensors"),
        }
    manifest = {"default": "ugicm-hp-tiny", "models": {"ugicm-hp-tiny": manifest_entry}}
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


@pytest.fixture(scope="module")
def restore_weights(tmp_path_factory):
    return _weights_dir(tmp_path_factory.mktemp("restore-weights"), with_restore=True)


@pytest.fixture(scope="module")
def plain_weights(tmp_path_factory):
    return _weights_dir(tmp_path_factory.mktemp("plain-weights"), with_restore=False)


def test_restore_eval_end_to_end(tmp_path, folder, restore_weights):
    from ugicm_codec.degradations import image_rng, parse_degradation
    from ugicm_codec.evaluation import baselines, report
    from ugicm_codec.evaluation.images import load_rgb
    from ugicm_codec.evaluation.metrics import psnr
    from ugicm_codec.evaluation.restoration import nr_measure

    out = tmp_path / "restore"
    args = ["eval", str(folder), "--out", str(out), "--weights", str(restore_weights), *ARGS]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for name in (
        "records.jsonl",
        "results.json",
        "results.md",
        "rate_psnr_noise-15.png",
        "rate_psnr_defocus-1.5.png",
    ):
        assert (out / name).is_file(), name

    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    # per image: per degradation the uncoded input, human + restore, webp and webp+restoration at 2
    # settings; then the clean image by WebP at 2 settings (and its NR score when BRISQUE is there)
    per_image = 2 * (1 + 2 + 2 * 2) + 2 + (1 if nr_measure() else 0)
    assert len(records) == 2 * per_image
    curves = {(r["degradation"], r["curve"]) for r in records}
    for label in ("noise-15", "defocus-1.5"):
        for curve in ("input", "ugicm/human", "ugicm/restore", "webp", "webp+restoration"):
            assert (label, curve) in curves
    assert ("clean", "webp/clean") in curves
    for r in records:
        assert {"image", "degradation", "curve", "setting", "bpp", "psnr", "ms_ssim", "seed"} <= set(r)
        if r["bpp"] is not None:
            assert r["bpp"] == pytest.approx(r["bytes"] * 8 / (64 * 64))
    by = {(r["image"], r["degradation"], r["curve"], r["setting"]): r for r in records}
    # the restore decode is its own decode of the same file
    human, restore = (
        by[("im0.png", "noise-15", "ugicm/human", "q50")],
        by[("im0.png", "noise-15", "ugicm/restore", "q50")],
    )
    assert human["bytes"] == restore["bytes"] and human["psnr"] != restore["psnr"]
    assert "restore=" in restore["coder"] and "restore=" not in human["coder"]
    assert "BM3D" in by[("im0.png", "noise-15", "webp+restoration", "q80")]["coder"]
    assert "true PSF" in by[("im0.png", "defocus-1.5", "webp+restoration", "q80")]["coder"]

    # Reproducible: the degraded copy coded by WebP gives the recorded PSNR against the clean image.
    clean = load_rgb(folder / "im1.png")
    d = parse_degradation("noise:15")
    webp = baselines.get("webp")
    decoded = webp.decode(webp.encode(d.apply(clean, image_rng(0, "im1.png", d)), 50))
    assert psnr(clean, decoded) == pytest.approx(by[("im1.png", "noise-15", "webp", "q50")]["psnr"])

    results = json.loads((out / "results.json").read_text())
    assert results["kind"] == "restore" and set(results["degradations"]) == {"noise-15", "defocus-1.5"}
    entry = results["degradations"]["noise-15"]
    assert set(entry["curves"]) == {"ugicm/restore", "ugicm/human", "webp+restoration", "webp", "webp/clean"}
    assert {r["reference"] for r in entry["bd"]} == {"ugicm/human", "webp+restoration", "webp", "webp/clean"}
    assert all(r["test"] == "ugicm/restore" for r in entry["bd"])
    text = (out / "results.md").read_text()
    assert "BD of `ugicm/restore` against each curve (cubic)" in text and "TRUE point spread function" in text

    # ugicm eval report renders the run as a section of docs/results.md.
    section = report.render([str(out)], command="ugicm eval report X")
    assert "BD-rate of `ugicm/restore` at equal PSNR" in section and "| noise-15 |" in section

    # A rerun finds every unit done and measures nothing again.
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "already in" in again.output
    assert len((out / "records.jsonl").read_text().splitlines()) == len(records)


def test_true_psf_is_the_blur_that_was_applied():
    from ugicm_codec.degradations import _blur, image_rng, parse_degradation
    from ugicm_codec.evaluation.restoration import true_psf

    clean = _photo(3)
    for spec in ("defocus:2", "motion:9"):
        d = parse_degradation(spec)
        blurred = np.clip(np.rint(_blur(clean.astype(np.float64), true_psf(d, 5, "a.png"))), 0, 255)
        assert np.array_equal(blurred.astype(np.uint8), d.apply(clean, image_rng(5, "a.png", d)))


def test_classic_restoration_helps_on_a_degraded_photo():
    from ugicm_codec.degradations import image_rng, parse_degradation
    from ugicm_codec.evaluation.metrics import psnr
    from ugicm_codec.evaluation.restoration import classic_restore, true_psf

    clean = _photo(4, 96)
    for spec in ("noise:25", "defocus:2"):
        d = parse_degradation(spec)
        degraded = d.apply(clean, image_rng(0, "b.png", d))
        psf = true_psf(d, 0, "b.png") if d.kind == "defocus" else None
        restored, _ = classic_restore(degraded, d, psf)
        assert psnr(clean, restored) > psnr(clean, degraded) + 1.0, spec


def _one_error_line(result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith(("Error:", "ugicm: error:"))]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.mark.parametrize(
    "extra, expected, code",
    [
        (["--degradations", "blur:3"], "unknown degradation 'blur'", 2),
        (["--degradations", "noise:x"], "must be a number", 2),
        (["--tasks", "restore,classification"], "cannot be combined", 2),
        (["--baselines", "webp,png"], "unknown baseline 'png'", 2),
        (["--prefer", "machine"], "leave --prefer out", 2),
    ],
)
def test_restore_usage_errors(tmp_path, folder, plain_weights, extra, expected, code):
    args = ["eval", str(folder), "--out", str(tmp_path / "o"), "--weights", str(plain_weights), *ARGS, *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code
    assert expected in _one_error_line(result)
    assert not (tmp_path / "o").exists()


def test_degradations_need_the_restore_task(tmp_path, folder):
    args = [
        "eval",
        str(folder),
        "--out",
        str(tmp_path / "o"),
        "--degradations",
        "noise:15",
        "--baselines",
        "webp",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "only with --tasks restore" in _one_error_line(result)


def test_weights_without_a_restore_addon_fail_before_torch(tmp_path, folder, plain_weights):
    """Refused with exit 3 before any image is coded, and without importing torch."""
    args = ["eval", str(folder), "--out", str(tmp_path / "o"), "--weights", str(plain_weights), *ARGS]
    code = (
        "import sys\n"
        "from ugicm_codec.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as e:\n"
        "    assert 'torch' not in sys.modules, 'torch was imported'\n"
        "    sys.exit(e.code)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 3, run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("ugicm: error: ") and "restore" in line
    assert not (tmp_path / "o").exists()
