"""The maintainer tools under scripts/, each through its functions (``main(argv)`` included), in this
process: they are release tools, not API, but a release must be able to count on them."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import GOLDEN, ROOT, load_script


def test_scripts_holds_only_the_tools_scripts_readme_lists():
    """Every script has its line in scripts/README.md, and every line names a script that exists."""
    readme = (ROOT / "scripts" / "README.md").read_text()
    scripts = sorted(
        str(p.relative_to(ROOT / "scripts"))
        for p in (ROOT / "scripts").rglob("*")
        if p.is_file() and p.suffix in (".py", ".sh") and "__pycache__" not in p.parts
    )
    for name in scripts:
        assert f"`{name}`" in readme, f"scripts/{name} is not in scripts/README.md"
    listed = [line.split("`")[1] for line in readme.splitlines() if line.startswith("| `")]
    assert sorted(listed) == scripts


def test_the_shell_tools_parse():
    """The device schedule's shell scripts run only on a lent GPU machine; here, at least, bash
    reads each of them without a syntax error."""
    import subprocess

    for script in sorted((ROOT / "scripts").rglob("*.sh")):
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"


def test_make_golden_regenerates_the_committed_tiny_files_bit_for_bit(tmp_path):
    """make_golden.py with the committed tiny model writes the committed golden files again: the
    format, the coder and the decoder have not drifted from formats/golden/."""
    import shutil

    shutil.copytree(GOLDEN / "tiny", tmp_path / "tiny")
    load_script("make_golden.py").main(["--out", str(tmp_path)])
    for name in ("source.png", "tiny-q30.ugc", "tiny-q90.ugc", "tiny-grey.ugc"):
        assert (tmp_path / name).read_bytes() == (GOLDEN / name).read_bytes(), name
    import numpy as np
    from PIL import Image

    for name in ("tiny-q30.human.png", "tiny-q30.machine.png", "tiny-grey.human.png"):
        with Image.open(tmp_path / name) as a, Image.open(GOLDEN / name) as b:
            assert np.array_equal(np.asarray(a), np.asarray(b)), name


def test_fuzz_ugc_runs_a_few_cases_and_reports_them(tmp_path):
    fuzz = load_script("fuzz_ugc.py")
    status = fuzz.main(["--cases", "12", "--seed", "3", "--json", str(tmp_path / "fuzz.json")])
    assert status == 0
    report = json.loads((tmp_path / "fuzz.json").read_text())
    assert report, "the JSON report is empty"


def test_pack_for_device_carries_the_model_without_coding_tables(tmp_path):
    from ugicm_codec.models import CODING_TABLES, build_model

    model = build_model("ugicm-hp-tiny")
    model.update(force=True)
    torch.save({"model": model.state_dict(), "step": 4, "config": {}}, tmp_path / "last.pt")
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "x.whl").write_bytes(b"0" * 100)
    load_script("pack_for_device.py").main(
        [
            str(tmp_path / "last.pt"),
            "--out",
            str(tmp_path / "carry"),
            "--train",
            str(GOLDEN / "source.png"),
            "--val",
            str(GOLDEN),
            "--wheels",
            str(tmp_path / "wheels"),
        ]
    )
    packed = torch.load(tmp_path / "carry" / "model.pt", weights_only=True)
    assert packed["step"] == 4 and not any(k.endswith(CODING_TABLES) for k in packed["model"])
    assert {v.dtype for v in packed["model"].values() if v.is_floating_point()} <= {
        torch.float16,
        torch.float32,
    }
    assert len(list((tmp_path / "carry" / "train").glob("*.jpg"))) == 1
    assert list((tmp_path / "carry" / "val").glob("*.png"))


def test_pack_for_device_refuses_without_the_wheels(tmp_path):
    torch.save({"model": {}, "step": 0, "config": {}}, tmp_path / "last.pt")
    with pytest.raises(SystemExit, match="no wheels"):
        load_script("pack_for_device.py").main([str(tmp_path / "last.pt"), "--wheels", str(tmp_path)])


def test_bench_memory_measures_a_small_image_in_fresh_processes(tmp_path):
    """One tiny size, no Kodak seam check: a row of times and peaks per mode, written as JSON."""
    load_script("bench_memory.py").main(
        [
            "--sizes",
            "0.01",
            "--threads",
            "1",
            "--no-seam-check",
            "--workdir",
            str(tmp_path),
            "--json",
            str(tmp_path / "m.json"),
        ]
    )
    (row,) = json.loads((tmp_path / "m.json").read_text())["rows"]
    assert row["encode_peak_gb"] > 0 and row["decode_seconds"] > 0 and row["bpp"] > 0
    assert row["image"] == "synthetic"


def test_bench_memory_measures_a_given_image(tmp_path):
    load_script("bench_memory.py").main(
        ["--sizes", "", "--images", str(GOLDEN / "source.png"), "--threads", "1", "--no-seam-check"]
        + ["--workdir", str(tmp_path), "--json", str(tmp_path / "m.json")]
    )
    (row,) = json.loads((tmp_path / "m.json").read_text())["rows"]
    assert row["image"] == "source.png" and row["decode_peak_gb"] > 0


def test_device_collect_brings_back_the_furthest_phase_small(tmp_path):
    """scripts/device/collect.py, which brings a GPU run back through the device tool's 16 MiB
    files: float16 transforms, an exact entropy model, the ablation as a difference, parts that
    join back into the same state."""
    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    state = {
        "g_s.w": torch.randn(64, 64),
        "gaussian_conditional.scale_table": torch.rand(64),
        "preference.w": torch.randn(8),
    }
    for run, extra in (("s2h", 0.0), ("s2m", 1.0), ("s2n", 2.0)):
        (runs / run).mkdir(parents=True)
        model = dict(state, **{"preference.w": state["preference.w"] + extra})
        torch.save({"model": model, "step": 10, "config": {}}, runs / run / "last.pt")
        (runs / run / "log.jsonl").write_text('{"step": 10, "kind": "train"}\n')
    load_script("device/collect.py").main(out, runs=runs, part=4096)  # a small part: force the split
    names = sorted(p.name for p in out.iterdir())
    assert "s2h.pt" not in names and "s2n-diff.pt" in names and "s2m.pt" not in names
    joined = out / "s2m.pt"
    joined.write_bytes(b"".join(p.read_bytes() for p in sorted(out.glob("s2m.pt.part-*"))))
    machine = torch.load(joined, weights_only=True)["model"]
    assert machine["g_s.w"].dtype == torch.float16
    assert torch.equal(machine["gaussian_conditional.scale_table"], state["gaussian_conditional.scale_table"])
    ablation = torch.load(out / "s2n-diff.pt", weights_only=True)["model"]
    assert list(ablation) == ["preference.w"]
    assert len((out / "logs.jsonl").read_text().splitlines()) == 3


def test_kodak_mosaic_fills_the_size_asked_for(tmp_path):
    from PIL import Image

    for k in range(24):  # landscape and portrait stand-ins for the Kodak images
        Image.new("RGB", (12, 8) if k % 3 else (8, 12), (10 * k, 0, 0)).save(
            tmp_path / f"kodim{k + 1:02d}.png"
        )
    out = tmp_path / "m.png"
    load_script("kodak_mosaic.py").main(["60x40", str(out), "--grid", "3", "--kodak", str(tmp_path)])
    im = Image.open(out)
    assert im.size == (60, 40)
    assert im.getpixel((0, 0))[0] == 0 and im.getpixel((25, 0))[0] == 10 and im.getpixel((0, 20))[0] == 30
