"""Where users already are: the library API's inputs, the Pillow plugin, the PyTorch data path.
The wheel and Ray tests are in test_wheel.py and test_ray.py."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import GOLDEN, default_pixels
from ugicm_codec.errors import FormatError, ImageError, UgicmError

TINY = GOLDEN / "tiny"
Q30 = GOLDEN / "tiny-q30.ugc"  # made at quality 24 (named for the quality that once gave its level)


# ---------------------------------------------------------------------------------- library API
def test_encode_takes_paths_bytes_files_images_and_arrays_alike(tiny_codec, source_image):
    want = Q30.read_bytes()
    path = GOLDEN / "source.png"
    with open(path, "rb") as f:
        from_file = tiny_codec.encode(f, quality=24)
    for source in (
        path,
        str(path),
        path.read_bytes(),
        source_image,
        np.asarray(source_image),
        np.frombuffer(path.read_bytes(), np.uint8),
    ):
        assert tiny_codec.encode(source, quality=24) == want
    assert from_file == want


def test_decode_takes_paths_bytes_files_arrays_and_pillow_images_alike(tiny_codec):
    import ugicm_codec.pillow  # noqa: F401

    want = np.asarray(Image.open(GOLDEN / "tiny-q30.machine.png"))
    data = Q30.read_bytes()
    with open(Q30, "rb") as f, Image.open(Q30) as opened:
        sources = [Q30, str(Q30), data, bytearray(data), f, np.frombuffer(data, np.uint8), opened]
        for source in sources:
            assert np.array_equal(np.asarray(tiny_codec.decode(source, "machine")), want)


def test_rate_arguments_are_keyword_only(tiny_codec, source_image):
    with pytest.raises(TypeError):
        tiny_codec.encode(source_image, 30)
    with pytest.raises(TypeError):
        tiny_codec.encode_detailed(source_image, None, 1.0)


def test_wrong_inputs_raise_the_documented_errors(tiny_codec, source_image, tmp_path):
    with pytest.raises(FormatError, match="1-D uint8 array"):
        tiny_codec.decode(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(FormatError, match="not one opened from a .ugc file"):
        tiny_codec.decode(source_image)
    with pytest.raises(UgicmError, match="cannot read"):
        tiny_codec.decode(tmp_path / "absent.ugc")
    with pytest.raises(ImageError, match="cannot encode a dict"):
        tiny_codec.encode({}, quality=30)
    with pytest.raises(ImageError, match="a .ugc file, not an image"):
        tiny_codec.encode(Q30, quality=30)


def test_decode_batch_matches_single_decodes_stacked_or_not(tiny_codec):
    import torch

    files = [
        Q30.read_bytes(),
        (GOLDEN / "tiny-q90.ugc").read_bytes(),
        Q30.read_bytes(),
        (GOLDEN / "tiny-grey.ugc").read_bytes(),
    ]
    want = [tiny_codec.decode_array(data, "machine")[0] for data in files]
    for stack in (False, True):
        got = tiny_codec.decode_batch(files, prefer="machine", stack=stack, batch_size=2)
        assert all(np.array_equal(a, b) for a, b in zip(got, want))
    tensors = tiny_codec.decode_batch(files[:2], as_tensors=True)
    assert tensors[0].dtype == torch.uint8 and tensors[0].shape == (3, 80, 96)
    assert np.array_equal(tensors[1].permute(1, 2, 0).numpy(), tiny_codec.decode_array(files[1])[0])
    with pytest.raises(FormatError, match="^file 1: "):
        tiny_codec.decode_batch([files[0], b"\x89UGC\r\n\x1a\n"])


def test_progress_counts_tiles_up_to_the_total(tiny_codec, source_image):
    seen = []
    tiny_codec.encode_detailed(
        source_image, quality=30, progress=lambda done, total: seen.append((done, total))
    )
    assert seen == [(1, 2), (2, 2)]  # one tile analysed, then coded
    seen.clear()
    tiny_codec.decode_picture(Q30, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2)]  # one tile entropy-decoded, one synthesised


def test_the_default_decode_is_the_reference_where_bf16_is_not_native():
    from ugicm_codec.hardware import bf16_is_fast

    if bf16_is_fast("cpu"):
        pytest.skip("this CPU computes the default decode in bf16, which the reference is not")
    for prefer in ("human", "machine"):
        want = np.asarray(Image.open(GOLDEN / f"tiny-q30.{prefer}.png"))
        assert np.array_equal(default_pixels(Q30, prefer, TINY), want)


# ---------------------------------------------------------------------------------- Pillow
@pytest.fixture()
def pillow_tiny():
    import ugicm_codec.pillow as plugin

    saved = dict(plugin.DEFAULTS)
    plugin.configure(weights=TINY, device="cpu")
    yield plugin
    plugin.DEFAULTS.clear()
    plugin.DEFAULTS.update(saved)


def test_pillow_opens_lazily_with_the_header_in_info(pillow_tiny):
    with Image.open(Q30) as im:
        assert (im.format, im.mode, im.size) == ("UGC", "RGB", (96, 80))
        assert im.info["model"] == "ugicm-hp-tiny" and im.info["rate_level"] == pytest.approx(2.1)
        assert im.info["bytes"] == Q30.stat().st_size and not im._decoded  # nothing decoded yet
        assert np.array_equal(np.asarray(im), default_pixels(Q30, "human", TINY))
        assert im.info["prefer"] == "human"


def test_pillow_preference_per_image_and_by_default(pillow_tiny):
    machine = default_pixels(Q30, "machine", TINY)
    with Image.open(Q30) as im:
        im.prefer = "machine"
        assert np.array_equal(np.asarray(im), machine)
    with pillow_tiny.open(Q30, prefer=1.0) as im:
        assert np.array_equal(np.asarray(im), machine)
    pillow_tiny.configure(prefer="machine")
    with Image.open(Q30) as im:
        assert np.array_equal(np.asarray(im), machine)
    with pytest.raises(ValueError):
        pillow_tiny.configure(prefer="robots")


def test_pillow_round_trip_alone(pillow_tiny, tmp_path):
    Image.open(GOLDEN / "source.png").save(tmp_path / "x.ugc", quality=24)  # tiny-q30.ugc's level
    assert (tmp_path / "x.ugc").read_bytes() == Q30.read_bytes()  # the same file as the codec's
    with Image.open(tmp_path / "x.ugc") as im:
        im.convert("RGB").save(tmp_path / "x.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "x.png")), default_pixels(Q30, "human", TINY))
    grey = Image.open(GOLDEN / "source.png").convert("L")
    grey.putalpha(Image.linear_gradient("L").resize(grey.size))  # alpha that is kept, losslessly
    buf = io.BytesIO()
    grey.save(buf, format="UGC", target_bpp=2.0)
    with Image.open(io.BytesIO(buf.getvalue())) as back:
        assert back.mode == "LA" and back.size == grey.size and back.info["bpp"] <= 2.0
        assert np.array_equal(np.asarray(back)[..., 1], np.asarray(grey)[..., 1])


def test_pillow_reports_a_damaged_ugc_file_as_such(pillow_tiny):
    with pytest.raises(FormatError, match="truncated"):
        Image.open(io.BytesIO(Q30.read_bytes()[:40]))


# ---------------------------------------------------------------------------------- PyTorch data
class _Traced:
    """A dataset item with the worker process and the codec object that made it."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        import os

        return self.dataset[i], os.getpid(), id(self.dataset.codec())


def test_dataset_in_a_dataloader_with_two_workers(tiny_codec, tmp_path):
    import torch
    from torch.utils.data import DataLoader

    from ugicm_codec.data import UgcDataset

    names = ["tiny-q30.ugc", "tiny-q90.ugc", "tiny-grey.ugc"] * 2
    for i, name in enumerate(names):
        (tmp_path / f"{i}.ugc").write_bytes((GOLDEN / name).read_bytes())
    (tmp_path / "notes.txt").write_text("not a .ugc file: left out")
    dataset = UgcDataset(tmp_path, prefer="machine", weights=TINY)
    assert len(dataset) == len(names)
    loader = DataLoader(_Traced(dataset), batch_size=2, num_workers=2)
    images, workers = [], {}
    for batch, pids, codecs in loader:
        assert batch.dtype == torch.uint8 and batch.shape == (2, 3, 80, 96)
        images.extend(batch)
        for pid, codec in zip(pids.tolist(), codecs.tolist()):
            workers.setdefault(pid, set()).add(codec)
    assert len(workers) == 2 and all(len(c) == 1 for c in workers.values())  # one model a worker
    for image, name in zip(images, names):
        assert np.array_equal(image.permute(1, 2, 0).numpy(), default_pixels(GOLDEN / name, "machine", TINY))


def test_dataset_and_webdataset_decoder_refuse_and_pass_on(tmp_path):
    from ugicm_codec.data import UgcDataset, ugc_decoder

    with pytest.raises(UgicmError, match="no .ugc files"):
        UgcDataset(tmp_path)
    with pytest.raises(ValueError):
        UgcDataset([Q30], prefer="robots")
    decode = ugc_decoder("human", weights=TINY, as_tensors=False)
    assert decode("sample.jpg", b"...") is None and decode("cls", b"3") is None
    image = decode("sample.ugc", Q30.read_bytes())
    assert np.array_equal(image, default_pixels(Q30, "human", TINY))
    (tmp_path / "bad.ugc").write_bytes(b"not a ugc file")
    with pytest.raises(FormatError, match="bad.ugc: "):
        UgcDataset([tmp_path / "bad.ugc"], weights=TINY)[0]


# ---------------------------------------------------------------------------------- CLI
@pytest.fixture()
def cli(monkeypatch):
    from click.testing import CliRunner

    from ugicm_codec.cli import main

    monkeypatch.setenv("UGICM_WEIGHTS", str(TINY))
    return lambda *args: CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_decode_writes_what_pillow_writes(cli, tmp_path):
    from PIL import features

    want = default_pixels(Q30, "human", TINY)
    for suffix in (".tga", ".qoi") + ((".avif",) if features.check("avif") else ()):
        r = cli("decode", Q30, "-o", tmp_path / f"x{suffix}")
        assert r.exit_code == 0, r.output
        with Image.open(tmp_path / f"x{suffix}") as out:
            assert out.size == (96, 80)
            if suffix != ".avif":  # lossless formats hold the decode exactly
                assert np.array_equal(np.asarray(out.convert("RGB")), want)
    for bad in ("x.xyz", "x.ugc"):  # .ugc is encode's output, never a decode's
        r = cli("decode", Q30, "-o", tmp_path / bad)
        assert (
            r.exit_code == 2 and "unknown output image suffix" in r.output and not (tmp_path / bad).exists()
        )


def test_single_large_file_gets_a_tile_bar_only_on_a_terminal(monkeypatch):
    from ugicm_codec.reporting import Reporter

    assert Reporter(1, False, False, False, "encode").tile_progress() is None  # not a terminal here
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert Reporter(1, False, True, False, "encode").tile_progress() is None  # --json: JSON only
    assert Reporter(2, False, False, False, "encode").tile_progress() is None  # a batch has its bar
    reporter = Reporter(1, False, False, False, "encode")
    tiles = reporter.tile_progress()
    tiles(1, 2)
    assert reporter.progress is None  # a small image is done before a bar would help
    tiles(3, 12)
    assert reporter.progress.tasks[0].completed == 3 and reporter.progress.tasks[0].total == 12
    reporter.close()


def test_ray_form_without_ray_is_a_one_line_error(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # as if the extra were not installed
    r = cli("encode", "--ray", "local", GOLDEN / "source.png", "-o", tmp_path / "out")
    assert r.exit_code == 2 and "pip install 'ugicm[ray]'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()
