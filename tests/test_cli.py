"""The ugicm command line: outputs, pipelines, one-line errors and exit codes, atomic writes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import GOLDEN, KODAK, need_shared
from ugicm_codec.cli import main

TINY = str(GOLDEN / "tiny")


@pytest.fixture
def run(monkeypatch):
    monkeypatch.setenv("UGICM_WEIGHTS", TINY)

    def invoke(*args, input=None):
        return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


def test_encode_decode_info(run, tmp_path):
    src = GOLDEN / "source.png"
    out = tmp_path / "a.ugc"
    r = run("encode", src, "-o", out, "--json")
    assert r.exit_code == 0, r.output
    record = json.loads(r.stdout.splitlines()[0])
    assert record["bytes"] == out.stat().st_size
    assert run("decode", out, "--prefer", "human", "-o", tmp_path / "h.png").exit_code == 0
    assert run("decode", out, "--prefer", "machine", "-o", tmp_path / "m.webp").exit_code == 0
    assert Image.open(tmp_path / "m.webp").format == "WEBP"
    h = np.asarray(Image.open(tmp_path / "h.png"))
    assert h.shape == (80, 96, 3)
    r = run("info", out)
    assert r.exit_code == 0 and "96x80 RGB" in r.output and "ugicm-hp-tiny" in r.output
    info = json.loads(run("info", "--json", out).output)
    assert info["bytes"] == out.stat().st_size and info["width"] == 96


def test_target_bpp_says_when_the_budget_is_out_of_reach(run, tmp_path):
    src = GOLDEN / "source.png"
    met = json.loads(run("encode", src, "-o", tmp_path / "a.ugc", "--target-bpp", 8, "--json").stdout)
    assert met["target_met"] and met["bpp"] <= 8
    r = run("encode", src, "-o", tmp_path / "b.ugc", "--target-bpp", 0.001)
    assert r.exit_code == 0 and "over the 0.001 bpp target" in r.output
    assert (tmp_path / "b.ugc").stat().st_size * 8 / (96 * 80) > 0.001


def test_size_and_psnr_targets(run, tmp_path):
    src = GOLDEN / "source.png"
    met = json.loads(run("encode", src, "-o", tmp_path / "a.ugc", "--target-size", 300, "--json").stdout)
    assert met["target_met"] and met["bytes"] == (tmp_path / "a.ugc").stat().st_size <= 300
    r = run("encode", src, "-o", tmp_path / "b.ugc", "--target-size", 5)
    assert r.exit_code == 0 and "over the 5 byte target: the model's lowest rate" in r.output
    reached = json.loads(run("encode", src, "-o", tmp_path / "c.ugc", "--target-psnr", 5, "--json").stdout)
    assert reached["target_met"] and reached["psnr"] >= 5  # the tiny model's decodes are near 5.8 dB
    r = run("encode", src, "-o", tmp_path / "d.ugc", "--target-psnr", 90)
    assert r.exit_code == 0 and "under the 90 dB target: the model's highest rate" in r.output
    r = run("encode", src, "-o", tmp_path / "e.ugc", "-q", 50, "--target-psnr", 30)
    assert r.exit_code == 2 and "give one of --quality and --target-psnr" in r.output
    assert not (tmp_path / "e.ugc").exists()


def test_batch_to_directory_continues_after_a_bad_file(run, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = tmp_path / "good.png"
    good.write_bytes((GOLDEN / "source.png").read_bytes())
    r = run("encode", bad, good, "-o", tmp_path / "out")
    assert r.exit_code == 1
    assert (tmp_path / "out" / "good.ugc").exists() and not (tmp_path / "out" / "bad.ugc").exists()
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "bad.png" in errors[0]
    assert "1 of 2 done, 1 failed" in r.stderr
    assert not list((tmp_path / "out").glob("*.part"))
    # --json prints only JSON: the failure is a record, and nothing else is said
    (tmp_path / "out" / "good.ugc").unlink()
    r = run("encode", bad, good, "-o", tmp_path / "out", "--json")
    assert r.exit_code == 1 and r.stderr == ""
    records = {rec["input"].rsplit("/", 1)[-1]: rec for rec in map(json.loads, r.stdout.splitlines())}
    assert "error" in records["bad.png"] and records["good.png"]["bytes"] > 0


def test_several_inputs_to_a_file_name_is_a_usage_error(run, tmp_path):
    """`-o out.ugc` with two inputs is refused before anything is coded; an existing directory,
    or a name ending in /, takes them."""
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for p in (a, b):
        p.write_bytes((GOLDEN / "source.png").read_bytes())
    r = run("encode", a, b, "-o", tmp_path / "out.ugc")
    assert r.exit_code == 2 and "names a file" in r.stderr and not (tmp_path / "out.ugc").exists()
    r = run("encode", a, b, "-o", f"{tmp_path / 'out.ugc'}/")
    assert r.exit_code == 0 and (tmp_path / "out.ugc" / "b.ugc").is_file()


def test_jobs_and_skip_existing(run, tmp_path):
    for i in range(3):
        (tmp_path / f"im{i}.png").write_bytes((GOLDEN / "source.png").read_bytes())
    inputs = [tmp_path / f"im{i}.png" for i in range(3)]
    r = run("encode", *inputs, "-o", tmp_path / "out", "--jobs", "2", "--threads", "1")
    assert r.exit_code == 0, r.output
    serial = run("encode", inputs[0], "-o", tmp_path / "serial.ugc")
    assert serial.exit_code == 0
    assert (tmp_path / "out" / "im0.ugc").read_bytes() == (tmp_path / "serial.ugc").read_bytes()
    (tmp_path / "out" / "im1.ugc").unlink()
    r = run("encode", *inputs, "-o", tmp_path / "out", "--skip-existing")
    assert r.exit_code == 0 and "1 of 3 done, 2 skipped" in r.stderr
    (tmp_path / "out" / "im1.ugc").unlink()
    r = run("encode", *inputs, "-o", tmp_path / "out", "--skip-existing", "--json")
    assert r.exit_code == 0 and r.stderr == ""
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert sorted((rec["input"].rsplit("/", 1)[-1], rec.get("skipped", False)) for rec in records) == [
        ("im0.png", True),
        ("im1.png", False),
        ("im2.png", True),
    ]


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_file_one_line_error_no_output(run, tmp_path, damage):
    data = bytearray((GOLDEN / "tiny-q90.ugc").read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x10
    broken = tmp_path / "broken.ugc"
    broken.write_bytes(bytes(data))
    r = run("decode", broken, "-o", tmp_path / "x.png")
    assert r.exit_code == 1
    assert r.stderr.strip().count("\n") == 0 and "corrupt or truncated" in r.stderr
    assert "Traceback" not in r.output
    assert not (tmp_path / "x.png").exists()
    assert run("info", broken).exit_code == 1


def test_refuses_to_overwrite_input(run, tmp_path):
    src = tmp_path / "img.ugc"
    src.write_bytes((GOLDEN / "tiny-q30.ugc").read_bytes())
    r = run("decode", src, "-o", src)
    assert r.exit_code == 2 and "input itself" in r.output
    assert src.read_bytes() == (GOLDEN / "tiny-q30.ugc").read_bytes()


def test_missing_weights_exit_3(monkeypatch, tmp_path):
    monkeypatch.setenv("UGICM_WEIGHTS", str(tmp_path))
    r = CliRunner().invoke(
        main, ["decode", str(GOLDEN / "tiny-q30.ugc"), "--weights", str(tmp_path / "none.safetensors")]
    )
    assert r.exit_code == 3 and "weights file not found" in r.stderr


def test_altered_weights_exit_3(tmp_path):
    for name in ("manifest.json", "ugicm-hp-tiny.safetensors"):
        (tmp_path / name).write_bytes((GOLDEN / "tiny" / name).read_bytes())
    f = tmp_path / "ugicm-hp-tiny.safetensors"
    data = bytearray(f.read_bytes())
    data[-100] ^= 1
    f.write_bytes(bytes(data))
    r = CliRunner().invoke(
        main,
        ["decode", str(GOLDEN / "tiny-q30.ugc"), "--weights", str(tmp_path), "-o", str(tmp_path / "o.png")],
    )
    assert r.exit_code == 3 and "does not match its manifest" in r.stderr


def test_bad_preference_is_a_usage_error(run):
    r = run("decode", GOLDEN / "tiny-q30.ugc", "--prefer", "robots", "-o", "-")
    assert r.exit_code == 2


def test_shell_pipeline():
    """cat img | ugicm encode - -o - | ugicm decode - --prefer machine -o - > out.png"""
    env = {**os.environ, "UGICM_WEIGHTS": TINY}
    cmd = [sys.executable, "-m", "ugicm_codec.cli"]
    enc = subprocess.run(
        cmd + ["encode", "-", "-o", "-"],
        input=(GOLDEN / "source.png").read_bytes(),
        capture_output=True,
        env=env,
        check=True,
    )
    assert enc.stdout[:4] == b"\x89UGC"
    dec = subprocess.run(
        cmd + ["decode", "-", "--prefer", "machine", "-o", "-"],
        input=enc.stdout,
        capture_output=True,
        env=env,
        check=True,
    )
    assert dec.stdout[:8] == b"\x89PNG\r\n\x1a\n"


def _closed_pipe() -> int:
    """The write end of a pipe whose reader is already gone (as after `| head` has read enough)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


@pytest.mark.parametrize(
    "args",
    [
        ["info", str(GOLDEN / "tiny-q30.ugc"), str(GOLDEN / "tiny-q90.ugc")],
        ["decode", str(GOLDEN / "tiny-q30.ugc"), "-o", "-"],
        ["encode", str(GOLDEN / "source.png"), "-o", "-"],
    ],
)
def test_a_closed_stdout_ends_the_run_quietly(args):
    """`ugicm decode f.ugc -o - | head -c 100`: exit 141 like `cat`, no error line, no traceback."""
    pipe = _closed_pipe()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ugicm_codec.cli", *args],
            stdout=pipe,
            stderr=subprocess.PIPE,
            env={**os.environ, "UGICM_WEIGHTS": TINY},
        )
    finally:
        os.close(pipe)
    assert (proc.returncode, proc.stderr.decode()) == (141, "")


def test_a_closed_stderr_stops_a_batch_with_complete_files(tmp_path):
    """`ugicm encode *.png -o out/ 2>&1 | head -1`: the reports cannot be delivered, so the batch
    stops; what it wrote is whole."""
    pipe = _closed_pipe()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "ugicm_codec.cli",
                "encode",
                str(GOLDEN / "source.png"),
                str(GOLDEN / "tiny-q30.human.png"),
                "-o",
                str(tmp_path / "out") + "/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=pipe,
            env={**os.environ, "UGICM_WEIGHTS": TINY},
        )
    finally:
        os.close(pipe)
    assert proc.returncode == 141
    from ugicm_codec import container

    written = list((tmp_path / "out").iterdir())
    assert written and all(container.parse(f.read_bytes()) for f in written)


def test_readme_kodak_command(tmp_path, default_codec):
    """The issue's showcase: one file, two different decodes, and its header."""
    need_shared(KODAK)
    r = CliRunner()
    k, h, m = tmp_path / "k.ugc", tmp_path / "h.png", tmp_path / "m.png"
    assert r.invoke(main, ["encode", str(KODAK / "kodim01.png"), "-o", str(k)]).exit_code == 0
    assert r.invoke(main, ["decode", str(k), "--prefer", "human", "-o", str(h)]).exit_code == 0
    assert r.invoke(main, ["decode", str(k), "--prefer", "machine", "-o", str(m)]).exit_code == 0
    assert not np.array_equal(np.asarray(Image.open(h)), np.asarray(Image.open(m)))
    assert "768x512" in r.invoke(main, ["info", str(k)]).output


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupted_batch_leaves_complete_outputs_and_resumes(tmp_path, sig):
    import signal
    import time

    from ugicm_codec import container

    src = tmp_path / "in"
    src.mkdir()
    big = Image.open(GOLDEN / "source.png").resize((1280, 1024))
    for i in range(24):  # enough work that the signal lands mid-batch on an idle machine
        big.rotate(i * 15).save(src / f"im{i:02d}.png")
    out = tmp_path / "out"
    env = {**os.environ, "UGICM_WEIGHTS": TINY}
    cmd = [
        sys.executable,
        "-m",
        "ugicm_codec.cli",
        "encode",
        *sorted(map(str, src.glob("*.png"))),
        "-o",
        str(out),
    ]
    # A shell starts background jobs with SIGINT ignored, and the child would inherit that (Python
    # keeps an ignored SIGINT ignored): give it the default, as a terminal's Ctrl-C finds it.
    proc = subprocess.Popen(
        cmd,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("*.ugc")):
        time.sleep(0.05)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-500:]
    assert "Traceback" not in err.decode()
    finished = list(out.glob("*.ugc"))
    assert 1 <= len(finished) < 24
    for f in finished:
        container.parse(f.read_bytes())  # complete, valid files only
    import re

    summary = re.search(r"encode: (\d+) of 24 done, 0 failed, (\d+) not done \(interrupted\)", err.decode())
    assert summary and int(summary[1]) == len(finished) and int(summary[2]) == 24 - len(finished), (
        err.decode()
    )
    assert not [p for p in out.iterdir() if p.suffix != ".ugc"]
    rerun = subprocess.run(cmd + ["--skip-existing"], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list(out.glob("*.ugc"))) == 24


def test_outputs_get_ordinary_permissions(run, tmp_path):
    out = tmp_path / "perm.ugc"
    old = os.umask(0o022)
    try:
        assert run("encode", GOLDEN / "source.png", "-q", "80", "-o", out, "--quiet").exit_code == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644
