"""Start-up and decode speed without changing what decodes: the torch-free command-line paths,
the CompressAI seam, the exact parse under every synthesis precision and thread count, and the
batched synthesis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from tests.conftest import GOLDEN, ROOT

HEAVY = ("torch_geometric", "torch._dynamo", "scipy", "torchvision", "pandas", "matplotlib")


def _python(code: str, cwd=ROOT, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


# ------------------------------------------------------------------------------- start-up
@pytest.mark.parametrize(
    "argv, status",
    [
        (["--help"], 0),
        (["--version"], 0),
        (["info", str(GOLDEN / "tiny-q30.ugc")], 0),
        (["decode", str(GOLDEN / "tiny-q30.ugc"), "--prefer", "robot", "-o", "{tmp}/x.png"], 2),
        (["decode", str(GOLDEN / "tiny-q30.ugc"), "--precision", "float16", "-o", "{tmp}/x.png"], 2),
        (["encode", str(GOLDEN / "source.png"), "-q", "200", "-o", "{tmp}/x.ugc"], 2),
        (["decode", "{tmp}/missing.ugc", "-o", "{tmp}/x.png"], 1),
        (["encode", "{tmp}/missing.png", "-o", "{tmp}/x.ugc"], 1),
        (["decode", str(GOLDEN / "source.png"), "-o", "{tmp}/x.png"], 1),  # not a .ugc file
        (["decode", str(GOLDEN / "tiny-q30.ugc"), "-o", "{tmp}/file/x.png"], 1),  # under a file
    ],
)
def test_answers_before_loading_torch(tmp_path, argv, status):
    """Help, version, info, usage errors, unreadable inputs and unwritable outputs are answered
    without importing torch (so in a fraction of a second), with a one-line error."""
    (tmp_path / "file").write_text("")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    r = _python(f"""
        import sys
        sys.argv = ["ugicm"] + {argv!r}
        from ugicm_codec.cli import main
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        print("torch" in sys.modules, code, file=sys.stderr)
    """)
    *messages, last = r.stderr.strip().splitlines()
    assert last == f"False {status}", r.stderr
    assert "Traceback" not in r.stderr
    if status:
        assert len([m for m in messages if m.strip()]) <= 3, r.stderr  # a usage line, not a dump
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.ugc").exists()


def test_exit_statuses_have_one_home():
    from ugicm_codec import cli, errors
    from ugicm_codec.evaluation import cli as eval_cli

    for name in ("EXIT_FAILED", "EXIT_USAGE", "EXIT_WEIGHTS", "EXIT_INTERRUPTED"):
        assert getattr(cli, name) is getattr(errors, name) is getattr(eval_cli, name)
    assert errors.WeightsError.exit_code == errors.EXIT_WEIGHTS


def test_cli_precisions_match_the_library():
    from ugicm_codec import cli, synthesis

    assert cli.PRECISIONS == synthesis.PRECISIONS


# ------------------------------------------------------------------------------- the seam
def test_decode_imports_nothing_heavy(tmp_path):
    """A decode in a fresh interpreter leaves none of CompressAI's heavy imports behind."""
    r = _python(f"""
        import sys
        from ugicm_codec.codec import Codec
        codec = Codec(weights={str(GOLDEN / "tiny")!r}, device="cpu")
        codec.decode({str(GOLDEN / "tiny-q30.ugc")!r}, "machine")
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_seam_leaves_the_rest_of_compressai_reachable():
    """After the seam, code that wants all of CompressAI (the bench's zoo model, training) gets
    it, with the classes the codec uses; scipy arrives when a helper needs it."""
    r = _python("""
        import sys
        from ugicm_codec import compressai_seam as seam
        assert "scipy" not in sys.modules
        from compressai.zoo import bmshj2018_hyperprior
        import compressai
        net = bmshj2018_hyperprior(quality=1, pretrained=False)
        assert type(net.gaussian_conditional) is seam.GaussianConditional
        assert compressai.__version__ == seam.REQUIRED_VERSION
        assert abs(seam.GaussianConditional._standardized_quantile(0.5)) < 1e-12  # scipy, on use
        print("ok")
    """)
    assert r.stdout.strip().endswith("ok"), r.stderr


def test_another_compressai_version_is_refused(tmp_path):
    """A CompressAI other than the pinned one gives a clear error, not a decode with other code."""
    fake = tmp_path / "compressai"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise RuntimeError('the package __init__ must not run')\n")
    (fake / "version.py").write_text("__version__ = '9.9.9'\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    r = _python(
        """
        from ugicm_codec.errors import UgicmError
        try:
            import ugicm_codec.compressai_seam
        except UgicmError as e:
            print(type(e).__name__, e.exit_code, e)
    """,
        cwd=tmp_path,
        env=env,
    )
    assert "CompressAIVersionError 3 ugicm needs CompressAI 1.2.8, found 9.9.9" in r.stdout, r.stderr


# ------------------------------------------------------------------ precision and the parse
def _latents(codec, data):
    return codec._decode_latent(codec.parse(data))


@pytest.mark.parametrize("fixture", ["tiny_codec", "context_codec"])
def test_parse_is_the_same_under_every_precision_and_thread_count(request, fixture, source_image):
    from ugicm_codec.synthesis import PRECISIONS

    codec = request.getfixturevalue(fixture)
    data = codec.encode(source_image, quality=70)
    threads = torch.get_num_threads()
    saved = codec.precision
    try:
        reference = None
        for precision in PRECISIONS:
            for n in (1, 2):
                torch.set_num_threads(n)
                codec.precision = precision
                y = _latents(codec, data)
                if reference is None:
                    reference = y
                assert torch.equal(y, reference), (precision, n)
                codec.decode_array(data)  # the whole decode runs at this precision
    finally:
        codec.precision = saved
        torch.set_num_threads(threads)


@pytest.mark.parametrize("parity", [0, 1])
@pytest.mark.parametrize("support", [None, 0, 1])
def test_a_half_of_the_checkerboard_is_evaluated_as_the_whole_grid_is_there(parity, support):
    """The parse evaluates the context only where a half is coded (layers.ExactStack.at_half):
    bit for bit what the whole-grid evaluation gives there, in the raster order of the grid."""
    from ugicm_codec.entropy import anchor_mask, from_raster_order, raster_order
    from ugicm_codec.layers import ExactStack, checkerboard_phases

    g = torch.Generator().manual_seed(parity + 3 * (support or 0))
    conv = torch.nn.Conv2d(6, 5, 5, padding=2)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
    x = torch.randint(-40, 40, (2, 6, 12, 10), generator=g).double() / 4
    if support is not None:
        x = x * (anchor_mask(12, 10) if support == 0 else ~anchor_mask(12, 10))
    stack = ExactStack(torch.nn.Sequential(conv))
    half = stack.at_half(x, parity, support)
    whole = stack(x)
    assert torch.equal(half, checkerboard_phases(whole, parity))
    mask = anchor_mask(12, 10) if parity == 0 else ~anchor_mask(12, 10)
    assert torch.equal(raster_order(half), whole[mask.expand_as(whole)])
    assert torch.equal(from_raster_order(raster_order(half), half.shape), half)


def test_tiles_side_by_side_come_back_in_order_and_restore_the_threads():
    from ugicm_codec.workers import tile_map

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        seen = []
        assert list(tile_map(lambda k: seen.append(torch.get_num_threads()) or k * k, range(7))) == [
            k * k for k in range(7)
        ]
        assert seen[0] == 2 and set(seen[1:]) == {1}  # the first alone, the rest one thread each
        assert torch.get_num_threads() == 2
        with pytest.raises(ZeroDivisionError):
            list(tile_map(lambda k: 1 / (k - 3), range(6)))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_float32_is_the_reference_decode_on_any_thread_count(tiny_codec):
    from PIL import Image

    threads = torch.get_num_threads()
    saved = tiny_codec.precision
    want = np.asarray(Image.open(GOLDEN / "tiny-q30.machine.png"))
    try:
        tiny_codec.precision = "float32"
        for n in (1, 2):
            torch.set_num_threads(n)
            assert np.array_equal(tiny_codec.decode_array(GOLDEN / "tiny-q30.ugc", "machine")[0], want)
    finally:
        tiny_codec.precision = saved
        torch.set_num_threads(threads)


def test_fast_precision_stays_within_a_rounding_of_the_reference(tiny_codec, source_image):
    from ugicm_codec.image_io import psnr

    big = source_image.resize((320, 240))
    data = tiny_codec.encode(big, quality=80)
    saved = tiny_codec.precision
    try:
        decoded = {}
        for precision in ("float32", "fast"):
            tiny_codec.precision = precision
            decoded[precision] = tiny_codec.decode_array(data)[0]
    finally:
        tiny_codec.precision = saved
    original = np.asarray(big)
    assert np.abs(decoded["fast"].astype(int) - decoded["float32"]).max() <= 1
    assert abs(psnr(original, decoded["fast"]) - psnr(original, decoded["float32"])) <= 0.05


def test_stacked_tiles_and_files_give_the_pixels_of_one_at_a_time(tiny_codec, source_image):
    """The batched synthesis (tiles of one shape stacked, several files at once, as a GPU runs
    it) gives what one file and one tile at a time give."""
    from ugicm_codec.synthesis import synthesize

    files = [
        tiny_codec.parse(tiny_codec.encode(source_image.rotate(angle), quality=60)) for angle in (0, 180)
    ]
    y = torch.cat([tiny_codec._decode_latent(f) for f in files])
    f = files[0]
    args = (tiny_codec.model, y, f.rate_level, 1.0, f.height, f.width, "fast")
    stacked = synthesize(*args, tile=2, stack=8)
    alone = np.stack(
        [synthesize(tiny_codec.model, y[i : i + 1], *args[2:], tile=2, stack=1)[0] for i in range(len(files))]
    )
    assert stacked.shape == (2, f.height, f.width, 3)
    assert np.abs(stacked.astype(int) - alone).max() <= 1
    assert (stacked != alone).mean() < 0.001


def test_bench_reports_synthesis_work():
    """The bench's multiply-accumulate count of g_s per pixel: positive, and larger for the machine
    decode, which also runs the machine adapters."""
    from ugicm_codec.evaluation.bench import synthesis_macs_per_pixel
    from ugicm_codec.models import build_model

    model = build_model("ugicm-hpa-tiny").eval()
    with torch.no_grad():
        for adapter in model.g_s.adapters:
            adapter.gate.weight.normal_(0, 0.1)
    human, machine = (synthesis_macs_per_pixel(model, beta, 0.0) for beta in (0.0, 1.0))
    assert 0 < human < machine
    json.dumps({"macs": human})


def test_coder_tables_are_made_once_and_follow_the_model(tiny_codec):
    from ugicm_codec.entropy import coder_tables

    gc = tiny_codec.model.gaussian_conditional
    first = coder_tables(gc)
    assert coder_tables(gc) is first
    lengths = gc._cdf_length.tolist()
    assert first[0] == [row[:n] for row, n in zip(gc._quantized_cdf.tolist(), lengths)]
    model = tiny_codec.model
    saved = gc._quantized_cdf.clone()
    try:
        gc._quantized_cdf[0, 0] += 1  # a table change (as update() makes) is seen
        assert coder_tables(gc)[0][0][0] == first[0][0][0] + 1
    finally:
        gc._quantized_cdf.copy_(saved)
    assert coder_tables(model.gaussian_conditional)[0] == [row[:n] for row, n in zip(saved.tolist(), lengths)]


def test_bench_markdown_puts_before_beside_after():
    from ugicm_codec.evaluation.bench import markdown_report

    row = {
        "image": "/x/kodim01.png",
        "codec": "ugicm",
        "width": 768,
        "height": 512,
        "threads": 2,
        "encode_s": 2.0,
        "decode_s": 3.0,
        "encode_mp_per_s": 0.2,
        "decode_mp_per_s": 0.13,
        "peak_rss_mib": 900,
    }
    after = {
        **row,
        "version": "after",
        "decode_s": 1.5,
        "parse_s": 0.5,
        "synthesis_s": 1.0,
        "synthesis_macs_per_pixel": 68000.0,
        "synthesis_gmac_per_s": 26.7,
        "setting": {"startup": {"imports_s": 1.1, "model_load_s": 0.2}},
        "compressai_decode_same_process_s": 0.9,
    }
    startup = {v: {"ugicm --help": {"wall_s": s, "status": 0}} for v, s in (("before", 4.0), ("after", 0.2))}
    text = markdown_report(
        [{**row, "version": "before"}, after, {**row, "error": "boom"}], startup, "ugicm bench X"
    )
    assert "`ugicm bench X`" in text
    assert "| ugicm --help | 4.00 (exit 0) | 0.20 (exit 0) |" in text
    before_line, after_line = [line for line in text.splitlines() if "| ugicm |" in line][:2]
    assert "| before |" in before_line and "| 3.000 |" in before_line and "| – |" in before_line
    assert "| after |" in after_line and "| 68k | 26.7 |" in after_line and "| 0.900 |" in after_line
    assert "error: boom" in text


def test_bench_times_many_files_through_the_batched_decode(tmp_path):
    """`ugicm bench --batch N`: Codec.decode_batch of N copies, stacked (the path a GPU takes),
    timed on the CPU here, in the JSON and the Markdown."""
    from click.testing import CliRunner

    from ugicm_codec.cli import main

    args = [
        "bench",
        str(GOLDEN / "source.png"),
        "--codecs",
        "ugicm",
        "--repeat",
        "1",
        "--no-cuda",
        "--batch",
        "3",
    ]
    args += ["--weights", str(GOLDEN / "tiny"), "--json", str(tmp_path / "b.json")]
    result = CliRunner().invoke(main, args + ["--markdown", str(tmp_path / "b.md")])
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "b.json").read_text())["results"]
    assert row["batch_files"] == 3 and row["batch_decode_s"] > 0
    pixels = row["width"] * row["height"]
    assert row["batch_decode_mp_per_s"] == pytest.approx(3 * pixels / 1e6 / row["batch_decode_s"])
    assert row["gemm_gmac_per_s"] > 0  # the rate the synthesis' GMAC/s reads against
    markdown = (tmp_path / "b.md").read_text()
    assert "## Many files (`Codec.decode_batch`)" in markdown and "A 2048×2048 matrix product" in markdown


def test_the_last_upsamplings_in_bands_give_the_whole_decode():
    """The fast plan's g_s runs its last two upsamplings in row bands (PreferenceSynthesis
    ._tail_in_bands): with 2 rows of margin the bands meet as the whole would, also for bands
    that do not divide the rows."""
    from ugicm_codec.models import build_model

    torch.manual_seed(0)
    model = build_model("ugicm-hpa-tiny").eval()
    with torch.no_grad():
        for p in model.g_s.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        y = torch.randn(1, model.arch.M, 5, 7)
        e, _ = model.decoder_conditioning(1.0, torch.tensor([2.0]))  # the machine decode: adapters too
        whole = model.g_s(y, e)
        for band in (1, 3, 8, 100):
            assert torch.allclose(model.g_s(y, e, None, band), whole, atol=1e-5), band
