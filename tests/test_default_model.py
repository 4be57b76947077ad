"""The shipped weights: real bitstreams match the training-path rate estimate, golden file decodes."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import GOLDEN, KODAK, need_shared
from ugicm_codec.models import bits_per_pixel


def test_file_size_matches_likelihood_estimate(default_codec):
    need_shared(KODAK)
    im = Image.open(KODAK / "kodim23.png").convert("RGB").crop((128, 0, 640, 384))
    x = torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255  # 512x384: no padding
    for quality in (10, 48, 80):  # qualities 0-80 are the ladder
        level = default_codec.quality_to_level(quality)
        with torch.no_grad():
            out = default_codec.model(x, torch.tensor([level]), torch.zeros(1))
        estimated = bits_per_pixel(out["likelihoods"], 1).item()
        actual = 8 * sum(len(s) for s in default_codec.model.compress(x, level)["strings"])
        # The coder rounds each scale up to the next of 64 tabulated scales, which costs a few
        # percent over the continuous estimate (5 % measured at quality 10 on step-6180 weights).
        assert abs(actual - estimated) / estimated < 0.06, (quality, actual, estimated)


def test_golden_default_file(default_codec):
    path = GOLDEN / "default-q60.ugc"
    data = path.read_bytes()
    want = np.asarray(Image.open(GOLDEN / "default-q60.human.png"))
    assert np.array_equal(np.asarray(default_codec.decode(data, "human")), want)


def test_golden_default_file_is_unchanged_beside_the_restore_decode(default_codec):
    """The shipped restore add-on loaded, the golden file's human decode is still its golden
    pixels: the restore decode adds a decode, it changes none."""
    if not default_codec.info.manifest.get("restore"):
        pytest.skip("the shipped weights have no restore add-on")
    data = (GOLDEN / "default-q60.ugc").read_bytes()
    restored = np.asarray(default_codec.decode(data, "restore"))
    want = np.asarray(Image.open(GOLDEN / "default-q60.human.png"))
    assert np.array_equal(np.asarray(default_codec.decode(data, "human")), want)
    assert restored.shape == want.shape and not np.array_equal(restored, want)


def test_earlier_weights_are_where_the_manifest_says():
    """Each earlier release the manifest names (the decoder's hint for old files) is in git at its
    commit, with the digest its files carry."""
    import hashlib
    import json
    import subprocess

    from conftest import ROOT

    manifest = json.loads((ROOT / "weights" / "manifest.json").read_text())
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    assert manifest["earlier"]
    current = manifest["models"][manifest["default"]]["sha256"][:16]
    for digest, entry in manifest["earlier"].items():
        assert digest != current
        if (
            subprocess.run(
                ["git", "-C", str(ROOT), "cat-file", "-e", f"{entry['commit']}^{{commit}}"],
                capture_output=True,
            ).returncode
            != 0
        ):
            pytest.skip(f"commit {entry['commit']} is not in this clone (a shallow clone?)")
        blob = subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "show",
                f"{entry['commit']}:{entry.get('path', 'weights/' + entry['file'])}",
            ],
            capture_output=True,
            check=True,
        ).stdout
        assert hashlib.sha256(blob).hexdigest()[:16] == digest == entry["sha256"][:16]
