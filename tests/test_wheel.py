"""The wheel carries its weights: built from a copy of this tree, installed into a bare --target,
and run from there, it decodes the golden file exactly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import GOLDEN, ROOT


def test_wheel_installed_into_a_target_decodes(tmp_path):
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel", reason="building a wheel needs the wheel package")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "ugicm_codec", src / "ugicm_codec", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            "-q",
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("ugicm-*.whl"))
    manifest = json.loads((ROOT / "ugicm_codec" / "model_weights" / "manifest.json").read_text())
    shipped = manifest["models"][manifest["default"]]["file"]
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert (
            f"ugicm_codec/model_weights/{shipped}" in names
            and "ugicm_codec/model_weights/manifest.json" in names
        )
        assert not [n for n in names if "/data/" in n]  # nothing under the install prefix's share/
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        assert "ugicm = ugicm_codec.cli:main" in entry_points
    target = tmp_path / "target"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel), "-q"],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    # Run outside the source tree, with no weights hint: only the package data can be found.
    env = {k: v for k, v in os.environ.items() if k != "UGICM_WEIGHTS"}
    env["PYTHONPATH"] = str(target)
    work = tmp_path / "work"
    work.mkdir()
    where = subprocess.run(
        [sys.executable, "-c", "import ugicm_codec.weights as w; print(w.__file__); print(w.locate().path)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.returncode == 0, where.stderr[-2000:]
    module, weights = where.stdout.split()
    assert module.startswith(str(target)) and weights.startswith(str(target))
    out = work / "out.png"
    decode = subprocess.run(
        [
            sys.executable,
            "-m",
            "ugicm_codec.cli",
            "decode",
            str(GOLDEN / "default-q60.ugc"),
            "-o",
            str(out),
            "--threads",
            "2",
            "--precision",
            "float32",  # the reference decode, which the golden file holds
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert decode.returncode == 0, decode.stderr[-2000:]
    assert np.array_equal(
        np.asarray(Image.open(out)), np.asarray(Image.open(GOLDEN / "default-q60.human.png"))
    )
