"""The evaluation tooling: metrics, baselines, label matching, and `ugicm eval` / `ugicm bench` end to end."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ugicm_codec.cli import main
from ugicm_codec.evaluation import baselines, metrics
from ugicm_codec.evaluation.runner import bitstream_path, is_kodak, parse_preferences
from ugicm_codec.evaluation.tasks import imagenet_label_indices
from ugicm_codec.shared import shared_dir

SHARED = shared_dir()
KODAK = SHARED / "data" / "kodak"
needs_kodak = pytest.mark.skipif(not KODAK.is_dir(), reason=f"shared test data not found at {KODAK}")


def _image(h=192, w=256, seed=0):
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x % 256, y % 256, (x + y) % 256], axis=2).astype(np.float64)
    noise = np.random.default_rng(seed).normal(0, 8, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------ metrics
def test_psnr_by_hand():
    a = _image()
    b = a.astype(np.int16)
    b[::2] += 1  # every other row off by one: MSE = 1/2
    b = np.clip(b, 0, 255).astype(np.uint8)
    mse = np.mean((a.astype(float) - b) ** 2)
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / mse))
    assert metrics.psnr(a, a) == metrics.PSNR_CAP_DB


def test_ms_ssim():
    a = _image()
    assert metrics.ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    noisy = np.clip(a + np.random.default_rng(1).normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    assert 0 < metrics.ms_ssim(a, noisy) < 1
    assert metrics.ms_ssim(a[:100], a[:100]) is None  # too small for five scales
    assert metrics.ms_ssim_db(0.99) == pytest.approx(20.0)


@pytest.mark.parametrize("name", list(baselines.BASELINES))
def test_baselines_round_trip(name):
    codec = baselines.BASELINES[name]
    if codec.unavailable_reason():
        pytest.skip(codec.unavailable_reason())
    image = _image()
    low, high = (codec.encode(image, q) for q in (codec.qualities[0], codec.qualities[-1]))
    assert len(low) < len(high)
    assert codec.decode(high).shape == image.shape
    assert metrics.psnr(image, codec.decode(high)) > metrics.psnr(image, codec.decode(low))


# ----------------------------------------------------------------------------- helpers
def test_preferences_and_kodak_names():
    assert [(p.label, p.beta) for p in parse_preferences("human,machine,0.5,1")] == [
        ("human", 0.0),
        ("machine", 1.0),
        ("p0.5", 0.5),
    ]
    with pytest.raises(ValueError):
        parse_preferences("robot")
    assert is_kodak([Path("kodim01.png"), Path("kodim24.png")])
    assert not is_kodak([Path("kodim25.png")])


def test_imagenet_labels_from_file_names():
    labels = [
        "background",
        "tench, Tinca tinca",
        "crane",
        "Cardigan, Cardigan Welsh corgi",
        "cradle",
        "crane",
        "cardigan",
    ]
    files = [
        "n01440764_tench.JPEG",
        "n02012849_crane.JPEG",
        "n02113186_Cardigan.JPEG",
        "n03125729_cradle.JPEG",
        "n03126707_crane.JPEG",
        "n03980874_cardigan.JPEG",
        "n09999999_unknown.JPEG",
    ]
    assert imagenet_label_indices(files, labels) == {
        "n01440764_tench.JPEG": 1,
        "n02012849_crane.JPEG": 2,
        "n02113186_Cardigan.JPEG": 3,
        "n03125729_cradle.JPEG": 4,
        "n03126707_crane.JPEG": 5,
        "n03980874_cardigan.JPEG": 6,
    }


def test_cli_import_is_torch_free():
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import ugicm_codec.cli"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "torch" not in out.stderr
    assert "matplotlib" not in out.stderr


def test_eval_bad_input_is_one_line(tmp_path):
    result = CliRunner().invoke(
        main, ["eval", str(tmp_path), "--out", str(tmp_path / "o"), "--qualities", "120"]
    )
    assert result.exit_code == 2 and "outside 0-100" in result.output
    result = CliRunner().invoke(
        main, ["eval", str(tmp_path), "--out", str(tmp_path / "o"), "--baselines", "jpeg"]
    )
    assert result.exit_code == 2 and result.output.strip().startswith("ugicm: error: no images")
    assert "Traceback" not in result.output


def _jpeg_only(folder: Path, out: Path) -> list[str]:
    """``ugicm eval`` of JPEG at one quality alone: a quick run with no model."""
    return [
        "eval",
        str(folder),
        "--out",
        str(out),
        "--qualities",
        "none",
        "--baselines",
        "jpeg",
        "--baseline-qualities",
        "50",
    ]


def test_eval_reads_a_dataset_root_with_images_folder(tmp_path):
    from PIL import Image

    (tmp_path / "set" / "images").mkdir(parents=True)
    (tmp_path / "set" / "labels").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(
        tmp_path / "set" / "images" / "a.png"
    )
    result = CliRunner().invoke(main, _jpeg_only(tmp_path / "set", tmp_path / "o"))
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "o" / "records.jsonl").read_text().splitlines()[0])
    assert record["image"] == "a.png" and record["bpp"] > 0


def test_a_second_eval_on_the_same_out_is_refused(tmp_path):
    """Two runs appending to one records.jsonl would measure everything twice and race to results.json."""
    from PIL import Image

    from ugicm_codec.evaluation.records import RecordLog

    (tmp_path / "set").mkdir()
    Image.fromarray(_image(24, 32)).save(tmp_path / "set" / "a.png")
    args = _jpeg_only(tmp_path / "set", tmp_path / "o")
    running = RecordLog(tmp_path / "o")  # stands for a run in progress (the lock is per open file)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"ugicm: error: another ugicm eval is writing {tmp_path / 'o'}; wait for it or use another --out"
    )
    assert not (tmp_path / "o" / "records.jsonl").exists()
    running.close()
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "o" / "records.jsonl").read_text().splitlines()) == 1


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from ugicm_codec.models import build_model
    from ugicm_codec.weights import export

    d = tmp_path_factory.mktemp("weights")
    sha = export(build_model("ugicm-hp-tiny"), d / "m.safetensors")
    manifest = {
        "default": "ugicm-hp-tiny",
        "models": {"ugicm-hp-tiny": {"file": "m.safetensors", "sha256": sha}},
    }
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


@needs_kodak
def test_eval_on_two_kodak_images(tmp_path, tiny_weights):
    out = tmp_path / "eval"
    args = [
        "eval",
        str(KODAK),
        "--out",
        str(out),
        "--limit",
        "2",
        "--qualities",
        "30,80",
        "--baselines",
        "jpeg",
        "--baseline-qualities",
        "10,30,60,90",
        "--weights",
        str(tiny_weights),
        "--threads",
        "1",
        "--save-bitstreams",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for name in ("records.jsonl", "results.json", "results.md", "rate_psnr.png", "rate_msssim.png"):
        assert (out / name).is_file(), name

    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    n_jpeg = 4
    assert len(records) == 2 * (2 * 2 + n_jpeg)  # images x (qualities x preferences + jpeg settings)
    sizes = {}
    for r in records:
        codec = r["curve"].split("/")[0]
        suffix = ".ugc" if codec == "ugicm" else ".jpg"
        size = bitstream_path(out, codec, r["setting"], r["image"], suffix).stat().st_size
        assert r["bytes"] == size
        assert r["bpp"] == pytest.approx(size * 8 / (r["width"] * r["height"]), rel=1e-12)
        sizes.setdefault((r["curve"], r["setting"]), []).append(r["bpp"])

    results = json.loads((out / "results.json").read_text())
    assert results["kodak"] and results["images"] == ["kodim01.png", "kodim02.png"]
    assert set(results["curves"]) == {"ugicm/human", "ugicm/machine", "jpeg"}
    for curve, points in results["curves"].items():
        for p in points:
            assert p["n_images"] == 2
            assert p["bpp"] == pytest.approx(np.mean(sizes[(curve, p["setting"])]), rel=1e-12)
    assert len(results["curves"]["jpeg"]) == n_jpeg
    if (SHARED / "anchors" / "kodak").is_dir():
        assert results["anchors"]
        jpeg_vs_vtm = [
            r
            for r in results["bd"]
            if r["test"] == "jpeg"
            and r["reference"] == "vtm"
            and r["metric"] == "psnr"
            and r["method"] == "cubic"
        ]
        assert jpeg_vs_vtm and jpeg_vs_vtm[0]["bd_rate_percent"] > 0  # JPEG needs more bits than VTM
    assert "BD-rate at equal PSNR" in (out / "results.md").read_text()

    # The .ugc on disk decodes to the very pixels that were scored.
    from ugicm_codec.codec import Codec
    from ugicm_codec.evaluation.images import load_rgb

    human = next(r for r in records if r["curve"] == "ugicm/human")
    codec = Codec(weights=tiny_weights, device="cpu", threads=1)
    decoded, _ = codec.decode_array(
        bitstream_path(out, "ugicm", human["setting"], human["image"], ".ugc").read_bytes()
    )
    assert metrics.psnr(load_rgb(KODAK / human["image"]), decoded) == pytest.approx(human["psnr"])

    # A rerun finds everything done and measures nothing again.
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert len((out / "records.jsonl").read_text().splitlines()) == len(records)
    assert "already in" in again.output

    # Refined encodes are another coder: measured anew beside the plain ones, and named as such.
    refined = CliRunner().invoke(
        main,
        args[: args.index("--qualities")]
        + [
            "--qualities",
            "30",
            "--baselines",
            "none",
            "--weights",
            str(tiny_weights),
            "--threads",
            "1",
            "--limit",
            "1",
            "--refine-steps",
            "2",
        ],
    )
    assert refined.exit_code == 0, refined.output
    new = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()][len(records) :]
    assert len(new) == 2 and all(r["coder"].endswith(" refine=2") for r in new)
    assert json.loads((out / "results.json").read_text())["ugicm"]["refine_steps"] == 2


@needs_kodak
def test_bench_writes_json(tmp_path):
    target = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "--codecs", "jpeg", "--repeat", "1", "--json", str(target)])
    assert result.exit_code == 0, result.output
    report = json.loads(target.read_text())
    (row,) = report["results"]
    assert row["codec"] == "jpeg" and row["device"] == "cpu" and row["image"].endswith("kodim01.png")
    assert row["encode_s"] > 0 and row["decode_s"] > 0 and row["peak_rss_mib"] > 0
    assert row["bpp"] == pytest.approx(row["bytes"] * 8 / (row["width"] * row["height"]))


def test_task_metric_at_matched_rate():
    from ugicm_codec.evaluation.summary import interpolate_at_rate, matched_task_table

    def point(bpp, top1, setting="q"):
        return {"setting": setting, "bpp": bpp, "tasks": {"classification": {"top1": top1, "n": 4}}}

    webp = [point(0.2, 0.40), point(0.8, 0.70)]
    top1 = lambda p: p["tasks"]["classification"]["top1"]  # noqa: E731
    # Halfway in log-rate between 0.2 and 0.8 is 0.4: halfway in value.
    assert interpolate_at_rate(webp, top1, 0.4) == pytest.approx(0.55)
    assert interpolate_at_rate(webp, top1, 0.1) is None  # never extrapolated
    curves = {
        "ugicm/human": [point(0.4, 0.50, "q0"), point(1.0, 0.80, "q50")],
        "ugicm/machine": [point(0.4, 0.56, "q0"), point(1.0, 0.81, "q50")],
        "webp": webp,
    }
    rows = matched_task_table(curves)
    assert [(r["setting"], r["human"], r["machine"]) for r in rows] == [
        ("q0", 0.50, 0.56),
        ("q50", 0.80, 0.81),
    ]
    assert rows[0]["baselines"]["webp"] == pytest.approx(0.55)
    assert rows[1]["baselines"]["webp"] is None
    machine_only = matched_task_table({"ugicm/machine": curves["ugicm/machine"]})
    assert [(r["human"], r["machine"]) for r in machine_only] == [(None, 0.56), (None, 0.81)]


def test_compare_decodes_pairs_two_runs(tmp_path, monkeypatch):
    """`ugicm eval compare`: B − A of one decode across two runs, paired by image, from
    the records of each run's own weights only (a run directory may hold other weights' too)."""
    from ugicm_codec.evaluation import compare as compare_decodes
    from ugicm_codec.evaluation.tasks import ImageNetClassification

    class Classification(ImageNetClassification):
        def prepare(self, images):  # the outcomes carry their labels: no model needed
            pass

    monkeypatch.setattr(compare_decodes.task_registry, "make", lambda name, models_dir: Classification())
    images = [f"im{i}.png" for i in range(8)]

    def run(name, right_at_q0, other_weights_right=None):
        out = tmp_path / name
        out.mkdir()
        results = {
            "images": images,
            "folder": str(tmp_path),
            "tasks": ["classification"],
            "ugicm": {"model": "m", "weights_sha256": name * 16},
        }
        (out / "results.json").write_text(json.dumps(results))
        lines = []
        for coder, right in [(f"m:{name * 16}", right_at_q0), ("m:" + "x" * 16, other_weights_right)]:
            if right is None:
                continue
            for setting, hits in (("q0", right), ("q40", 8)):
                for i, im in enumerate(images):
                    outcome = {"label": 1, "top5": [1 if i < hits else 2, 3, 4, 5, 6]}
                    lines.append(
                        json.dumps(
                            {
                                "image": im,
                                "image_sha256": "s",
                                "curve": "ugicm/machine",
                                "setting": setting,
                                "coder": coder,
                                "tasks": {"classification": outcome},
                            }
                        )
                    )
        (out / "records.jsonl").write_text("\n".join(lines) + "\n")
        return out

    a, b = run("a", right_at_q0=4), run("b", right_at_q0=8, other_weights_right=0)
    rows = {
        (r["metric"], r["setting"]): r
        for r in compare_decodes.compare(a, "ugicm/machine", b, "ugicm/machine")
    }
    q0, q40, mean = rows["top1", "q0"], rows["top1", "q40"], rows["top1", "mean"]
    assert q0["difference"] == pytest.approx(0.5) and q0["low"] > 0 and q0["not_above"] < 0.05
    assert q40["difference"] == 0 and q40["low"] == q40["high"] == 0
    assert mean["difference"] == pytest.approx(0.25) and mean["low"] == pytest.approx(q0["low"] / 2)
    table = compare_decodes.table(list(rows.values()), "B − A")
    assert table[2].startswith("| task metric | setting | B − A |") and len(table) == 4 + len(rows)


def test_report_of_a_one_decode_run():
    """`ugicm eval --prefer human` writes no machine curve, `--prefer machine` no human one:
    their Kodak rows say so with dashes."""
    from ugicm_codec.evaluation import report

    point = {"setting": "q0", "quality": 0, "bpp": 0.05, "psnr": 24.2, "ms_ssim": 0.83}
    human_only = report.kodak_rows({"curves": {"ugicm/human": [point]}, "bd": []})
    assert human_only[2] == "| 0 | 0.050 | 24.20 | 0.8300 | – | – |"
    machine_only = report.kodak_rows({"curves": {"ugicm/machine": [point]}, "bd": []})
    assert machine_only[2] == "| 0 | 0.050 | – | – | 24.20 | 0.8300 |"


def test_compare_decodes_without_results_is_one_line(tmp_path):
    from ugicm_codec.evaluation.compare import compare
    from ugicm_codec.evaluation.report import ReportError

    with pytest.raises(ReportError, match="no results.json there"):
        compare(tmp_path, "ugicm/human", tmp_path, "ugicm/machine")
    result = CliRunner().invoke(
        main, ["eval", "compare", str(tmp_path), "ugicm/human", str(tmp_path), "ugicm/machine"]
    )
    assert (
        result.exit_code == 2
        and result.output.startswith("ugicm: error: ")
        and "no results.json" in result.output
    )


def test_report_against_another_run():
    """--against: a curve with 10 % fewer bits at every PSNR is a BD-rate of -10 % against the
    other run's; curves only one run has are left out."""
    from ugicm_codec.evaluation import report

    def curve(scale):
        points = ((0.1, 25), (0.3, 29), (0.8, 33), (1.5, 36))
        return [{"bpp": b * scale, "psnr": q, "ms_ssim_db": q / 2} for b, q in points]

    (line,) = report.against_rows(
        {"curves": {"ugicm/human": curve(0.9), "webp": curve(1)}}, {"curves": {"ugicm/human": curve(1)}}
    )
    assert line.startswith("ugicm/human vs the other run's: BD-rate -10.0 % (BD-PSNR +0.")
    assert line.endswith("dB), at equal MS-SSIM -10.0 %")


def test_report_sign_test_table_needs_both_decodes(tmp_path):
    """A run of the machine decode alone has no pairs: no table of "0 against 0, p = 1";
    where both decodes were scored, the discordant images are counted."""
    from ugicm_codec.evaluation import report

    def record(curve, image, predicted):
        return json.dumps(
            {
                "curve": curve,
                "setting": "q0",
                "image": image,
                "tasks": {"classification": {"label": 1, "top5": [predicted, 2, 3, 4, 5]}},
            }
        )

    records = tmp_path / "records.jsonl"
    records.write_text("\n".join(record("ugicm/machine", f"{i}.png", 1) for i in range(3)) + "\n")
    assert report.paired_classification(records) == []
    with records.open("a") as f:
        f.write("\n".join(record("ugicm/human", f"{i}.png", 1 if i else 0) for i in range(3)) + "\n")
    assert report.paired_classification(records)[-1] == "| 0 | 1 | 0 | 1 |"


def test_report_sign_test_counts_only_the_runs_own_records(tmp_path):
    """Records of other weights or another encoder in the same file (copied in) are not counted."""
    from ugicm_codec.evaluation import report
    from ugicm_codec.evaluation.runner import ugicm_coder

    def record(curve, coder, predicted):
        return json.dumps(
            {
                "curve": curve,
                "setting": "q0",
                "image": "a.png",
                "coder": coder,
                "tasks": {"classification": {"label": 1, "top5": [predicted, 2, 3, 4, 5]}},
            }
        )

    ours, plain = ugicm_coder("m", "f" * 64, refine_steps=20), ugicm_coder("m", "f" * 64)
    records = tmp_path / "records.jsonl"
    # The plain encoder's come last, so they would win if counted: the machine decode alone right.
    records.write_text(
        "\n".join(
            [
                record("ugicm/human", ours, 1),
                record("ugicm/machine", ours, 1),
                record("ugicm/human", plain, 0),
                record("ugicm/machine", plain, 1),
            ]
        )
        + "\n"
    )
    results = {"ugicm": {"model": "m", "weights_sha256": "f" * 64, "refine_steps": 20}, "images": ["a.png"]}
    assert report.paired_classification(records, results)[-1] == "| 0 | 0 | 0 | 1 |"


def test_report_reads_an_eval_folder_or_its_results_file(tmp_path):
    """Either argument form names the same results.json; anything else is a one-line error."""
    from ugicm_codec.evaluation import report

    (tmp_path / "results.json").write_text("{}")
    assert report.results_file(str(tmp_path)) == report.results_file(str(tmp_path / "results.json"))
    with pytest.raises(report.ReportError, match="no results.json there"):
        report.results_file(str(tmp_path / "missing"))


def test_paired_sign_test_of_the_report():
    """The report's exact sign test: known binomial tails."""
    from ugicm_codec.evaluation.report import sign_test

    assert sign_test(0, 5) == 2 / 32
    assert sign_test(3, 3) == 1.0 and sign_test(0, 0) == 1.0
    assert abs(sign_test(30, 13) - 0.0141) < 1e-3  # 2·P(X ≤ 13), X ~ Bin(43, 1/2)
    assert sign_test(13, 30) == sign_test(30, 13)


def test_report_of_a_machine_task_run_with_its_ablation(tmp_path):
    """A machine-task run's section: the matched-rate table (with the ablation's column), the
    sign test from its records and the paired intervals, under the do-not-edit line."""
    from ugicm_codec.evaluation import report

    def run(name, machine):
        out = tmp_path / name
        out.mkdir()
        matched = [
            {
                "task": "classification",
                "metric": "top1",
                "setting": "q0",
                "bpp": 0.07,
                "human": 0.42,
                "machine": machine,
                "baselines": {"webp": None},
            }
        ]
        results = {
            "folder": "imagenet",
            "images": ["a.png"],
            "tasks": ["classification"],
            "matched": matched,
            "curves": {"original": [{"tasks": {"classification": {"top1": 0.888}}}]},
            "paired": [
                {
                    "task": "classification",
                    "metric": "top1",
                    "setting": "q0",
                    "level": 0.95,
                    "low": 0.004,
                    "high": 0.1,
                    "not_above": 0.019,
                }
            ],
        }
        (out / "results.json").write_text(json.dumps(results))
        return out

    main_run, ablation = run("eval-imagenet", 0.476), run("eval-imagenet-nosem", 0.428)
    text = report.render([str(main_run)], ablations=[f"{main_run}={ablation}"], command="ugicm eval report X")
    lines = text.splitlines()
    assert lines[0] == "# Measured results" and lines[2] == report.GENERATED.format(
        command="ugicm eval report X"
    )
    assert "## eval-imagenet" in lines
    assert "| classification top1 | 0 | 0.070 | 42.0 | 47.6 | +5.6 | 42.8 | – | 88.8 |" in lines
    assert "| classification top1 | 0 | +5.6 | +0.4 … +10.0 | 1.9 % |" in lines
    with pytest.raises(report.ReportError, match="RUN=OTHER_RUN"):
        report.render([str(main_run)], against=[str(ablation)])


def test_eval_report_command_on_a_small_eval_output(tmp_path, tiny_weights):
    """End to end on a real (tiny) `ugicm eval` output: `ugicm eval report DIR -o FILE` writes one
    section with the per-quality rows of both decodes and the BD table, and names its command."""
    from PIL import Image

    (tmp_path / "set").mkdir()
    for i in range(2):
        Image.fromarray(_image(192, 192, seed=i)).save(tmp_path / "set" / f"im{i}.png")
    out = tmp_path / "eval-small"
    result = CliRunner().invoke(
        main,
        [
            "eval",
            str(tmp_path / "set"),
            "--out",
            str(out),
            "--qualities",
            "0,50,100",
            "--baselines",
            "jpeg",
            "--baseline-qualities",
            "10,40,70,95",
            "--weights",
            str(tiny_weights),
            "--threads",
            "1",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = tmp_path / "docs" / "results.md"
    result = CliRunner().invoke(main, ["eval", "report", str(out), "-o", str(doc)])
    assert result.exit_code == 0, result.output
    lines = doc.read_text().splitlines()
    assert lines[2] == report_generated(f"ugicm eval report {out} -o {doc}")
    assert "## eval-small" in lines and "- images: 2 from `" + str(tmp_path / "set") + "`" in lines
    rows = [line for line in lines if line.startswith(("| 0 |", "| 50 |", "| 100 |"))]
    assert len(rows) == 3 and all(row.count("|") == 7 and "–" not in row for row in rows)
    assert any(line.startswith("| jpeg (measured) |") for line in lines)


def report_generated(command: str) -> str:
    from ugicm_codec.evaluation.report import GENERATED

    return GENERATED.format(command=command)


def test_report_renders_the_speed_and_memory_files(tmp_path):
    """--bench and --memory: the tables of `ugicm bench --json` and scripts/bench_memory.py --json
    close the document; a file of another shape is a one-line error."""
    from ugicm_codec.evaluation import report

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps({"curves": {}, "bd": []}))
    bench = {
        "repeat": 5,
        "host": {"cpus": 2, "platform": "Linux"},
        "results": [
            {
                "codec": "ugicm",
                "version": "after",
                "device": "cpu",
                "image": "/x/kodim01.png",
                "threads": 2,
                "bpp": 0.85,
                "encode_s": 0.72,
                "decode_s": 1.1,
                "peak_rss_mib": 1218.4,
            },
            {"codec": "avif", "device": "cpu", "image": "/x/kodim01.png", "error": "no AVIF"},
        ],
    }
    memory = {
        "threads": 1,
        "device": "cpu",
        "note": "fresh processes",
        "rows": [
            {
                "megapixels": 1.0,
                "width": 1224,
                "height": 816,
                "encode_seconds": 3.4,
                "encode_peak_gb": 1.184,
                "decode_seconds": 5.84,
                "decode_peak_gb": 1.229,
                "machine_decode_seconds": 7.44,
                "machine_decode_peak_gb": 1.249,
                "bpp": 0.1059,
            }
        ],
    }
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    (tmp_path / "memory.json").write_text(json.dumps(memory))
    lines = report.render(
        [str(tmp_path / "run")], bench=tmp_path / "bench.json", memory=tmp_path / "memory.json"
    ).splitlines()
    assert "## Speed" in lines and "## Large images in bounded memory" in lines
    assert "| kodim01 | ugicm | after | cpu | 2 | 0.850 | 0.720 | 1.100 | 1218 |" in lines
    assert any(line.startswith("| kodim01 | avif |  | cpu | | error: no AVIF") for line in lines)
    assert "| synthetic | 1 | 1224×816 | 3.4 | 1.18 | 5.8 | 1.23 | 7.4 | 1.25 | 0.106 |" in lines
    (tmp_path / "bench.json").write_text(json.dumps({"kodak": bench}))  # not the bench's own shape
    with pytest.raises(report.ReportError, match="not a readable speed"):
        report.render([str(tmp_path / "run")], bench=tmp_path / "bench.json")
    (tmp_path / "memory.json").write_text(json.dumps({"rows": [{"megapixels": 1}]}))
    with pytest.raises(report.ReportError, match="not a readable large images"):
        report.render([str(tmp_path / "run")], memory=tmp_path / "memory.json")


def test_eval_folder_is_eval_run_and_report_and_compare_are_subcommands():
    """`ugicm eval FOLDER` keeps its meaning (the `run` subcommand); its help names the two
    subcommands that read finished runs."""
    runner = CliRunner()
    result = runner.invoke(main, ["eval"])
    assert result.exit_code == 2 and "Missing argument 'FOLDER'" in result.output
    result = runner.invoke(main, ["eval", "--help"])
    text = " ".join(result.output.split())  # the help is wrapped to the terminal
    assert result.exit_code == 0 and "ugicm eval report" in text and "ugicm eval compare" in text
    for sub in ("report", "compare"):
        result = runner.invoke(main, ["eval", sub, "--help"])
        assert result.exit_code == 0 and f"eval {sub} [OPTIONS]" in result.output
