"""Coding a corpus on Ray Data: one local Ray of 2 CPUs for the library function and both CLI
forms (Ray starts slowly, so it is started once)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import GOLDEN

TINY = GOLDEN / "tiny"


def test_ray_outputs_are_the_local_ones_and_a_bad_file_does_not_stop_them(tiny_codec, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'ugicm[ray]')")
    pytest.importorskip("ray.data", reason="Ray Data is not importable")
    from click.testing import CliRunner

    from ugicm_codec.cli import main
    from ugicm_codec.cluster import encode_on_ray
    from ugicm_codec.errors import WeightsError

    source = Image.open(GOLDEN / "source.png").convert("RGB")
    inputs = []
    for i in range(3):
        path = tmp_path / "in" / f"im{i}.png"
        path.parent.mkdir(exist_ok=True)
        source.rotate(90 * i, expand=True).save(path)
        inputs.append(path)
    bad = tmp_path / "in" / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        records = encode_on_ray([*inputs, bad], tmp_path / "lib", weights=TINY, quality=40)
        monkeypatch.setenv("UGICM_WEIGHTS", str(TINY))
        runner = CliRunner()
        enc = runner.invoke(
            main,
            [
                "encode",
                "--ray",
                "local",
                *map(str, inputs),
                str(bad),
                "-o",
                str(tmp_path / "cli"),
                "-q",
                "40",
                "--json",
            ],
            catch_exceptions=False,
        )
        dec = runner.invoke(
            main,
            [
                "decode",
                "--ray",
                "local",
                *map(str, sorted((tmp_path / "cli").glob("*.ugc"))),
                "-o",
                str(tmp_path / "dec"),
                "--prefer",
                "machine",
            ],
            catch_exceptions=False,
        )
        # Actors that load other weights than this machine's stop the run with a WeightsError.
        import types

        monkeypatch.setattr(
            "ugicm_codec.weights.locate", lambda weights=None: types.SimpleNamespace(sha256="0" * 64)
        )
        with pytest.raises(WeightsError, match="a Ray node loaded other weights"):
            encode_on_ray(inputs[:1], tmp_path / "other", weights=TINY)
        assert not (tmp_path / "other").exists()
    finally:
        ray.shutdown()

    by_name = {r["input"].rsplit("/", 1)[-1]: r for r in records}
    assert "error" in by_name["bad.png"] and not (tmp_path / "lib" / "bad.ugc").exists()
    assert enc.exit_code == 1 and enc.stderr == ""  # one file failed; --json printed only JSON
    cli_records = {r["input"].rsplit("/", 1)[-1]: r for r in map(json.loads, enc.stdout.splitlines())}
    assert "error" in cli_records["bad.png"] and len(cli_records) == 4
    assert dec.exit_code == 0, dec.output
    from ugicm_codec.codec import Codec

    default = Codec(weights=tiny_codec.info.path.parent, device="cpu")
    for path in inputs:
        local = tiny_codec.encode(path, quality=40)
        assert (tmp_path / "lib" / f"{path.stem}.ugc").read_bytes() == local
        assert (tmp_path / "cli" / f"{path.stem}.ugc").read_bytes() == local
        assert by_name[path.name]["bytes"] == len(local)
        decoded = np.asarray(Image.open(tmp_path / "dec" / f"{path.stem}.machine.png"))
        assert np.array_equal(decoded, default.decode_array(local, "machine")[0])  # CLI: default precision
    assert not list(tmp_path.rglob("*.part"))
