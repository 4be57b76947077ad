"""``ugicm eval`` and ``ugicm bench``.

This module imports only click at load time (``ugicm info`` must stay fast and torch-free); the
evaluation modules, torch and matplotlib are imported when a command runs.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import click

from ..errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, EXIT_WEIGHTS

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
BD_METHODS = ("cubic", "pchip")  # bd.METHODS, spelt out so that loading this module needs no numpy


def _fail(message: str, code: int) -> None:
    click.echo(f"ugicm: error: {message}", err=True)
    sys.exit(code)


def _split(text: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    return [] if [s.lower() for s in items] == ["none"] else items


def _qualities(text: str, option: str = "--qualities", kind=float) -> list:
    values = []
    for item in _split(text):
        try:
            q = kind(item)
        except ValueError:
            raise click.BadParameter(
                f"{item!r} is not {'a whole' if kind is int else 'a'} number", param_hint=option
            ) from None
        if not 0 <= q <= 100:
            raise click.BadParameter(f"{q:g} is outside 0-100", param_hint=option)
        if q not in values:
            values.append(q)
    return sorted(values)


def _baseline_names(text: str) -> list[str]:
    """The ``--baselines`` list, each known and available here (a usage error otherwise)."""
    from . import baselines as baseline_codecs

    names = list(dict.fromkeys(b.lower() for b in _split(text)))
    for name in names:
        if name not in baseline_codecs.BASELINES:
            raise click.BadParameter(
                f"unknown baseline {name!r} (known: {', '.join(baseline_codecs.BASELINES)})",
                param_hint="--baselines",
            )
        reason = baseline_codecs.BASELINES[name].unavailable_reason()
        if reason:
            _fail(f"baseline {name}: {reason}", EXIT_USAGE)
    return names


def _weights_model(weights) -> dict:
    from ..errors import WeightsError
    from ..weights import locate

    try:
        info = locate(weights)
    except WeightsError as e:
        _fail(str(e), EXIT_WEIGHTS)
    return {"name": info.name, "sha256": info.sha256, "path": str(info.path)}


# ---------------------------------------------------------------------------------- eval
class _EvalGroup(click.Group):
    """``ugicm eval FOLDER --out DIR`` measures (the ``run`` subcommand, the default); ``ugicm eval
    report`` and ``ugicm eval compare`` read finished runs."""

    def parse_args(self, ctx, args):
        if not args or args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("eval", cls=_EvalGroup, context_settings=CONTEXT)
def eval_command():
    """Measure codecs on a folder of images (ugicm eval FOLDER --out DIR); report or compare runs.

    `ugicm eval FOLDER --out DIR` is `ugicm eval run FOLDER --out DIR`; `ugicm eval report` and
    `ugicm eval compare` read finished runs."""


@eval_command.command("run", context_settings=CONTEXT)
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for records.jsonl, results.json, results.md and the plots.",
)
@click.option(
    "--qualities",
    default="10,25,40,55,70,85,100",
    show_default=True,
    help="ugicm qualities (0-100), comma-separated; 'none' for the baselines alone.",
)
@click.option(
    "--baselines",
    default="jpeg,webp,avif",
    show_default=True,
    help="Pillow codecs to compare with (jpeg, webp, avif), or 'none'.",
)
@click.option(
    "--baseline-qualities",
    help="One comma-separated quality ladder (0-100) for every baseline "
    "instead of each codec's own (see baselines.py), e.g. for a quick run.",
)
@click.option(
    "--prefer",
    "preferences",
    default="human,machine",
    show_default=True,
    help="Decode each ugicm file for these preferences: human, machine or numbers in [0, 1].",
)
@click.option(
    "--tasks",
    default="none",
    show_default=True,
    help="Machine tasks scored on every decoded image, comma-separated: classification "
    "(ImageNet-named files), detection (YOLO-format labels/), segmentation (masks/, or "
    "agreement with the prediction on the original). Or restore alone: code degraded copies "
    "(--degradations) and score the restore decode against the clean images, next to "
    "baselines followed by classic restoration (BM3D, deconvolution) [baselines: webp,avif].",
)
@click.option(
    "--degradations",
    help="With --tasks restore: the degradations, KIND:LEVEL comma-separated (noise, poisson, "
    "defocus, motion, lowlight, jpeg) [default: noise:15,noise:30,defocus:1.5,defocus:3].",
)
@click.option(
    "--seed",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="With --tasks restore: the seed of the degradations' random draws (per image).",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, path_type=Path),
    help="Weights file or directory (default: the shipped model).",
)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    help="Torch threads per worker (default: all for one job, 1 each for several).",
)
@click.option("--jobs", type=click.IntRange(1, 256), default=1, show_default=True, help="Worker processes.")
@click.option("--limit", type=click.IntRange(1), help="Use only the first N images (sorted by name).")
@click.option(
    "--anchors",
    type=click.Path(file_okay=False, path_type=Path),
    help="Published Kodak figures (CompressAI JSON) to compare with [default: ../shared/anchors/kodak].",
)
@click.option(
    "--models",
    type=click.Path(file_okay=False, path_type=Path),
    help="Downstream models for --tasks [default: ../shared/models].",
)
@click.option(
    "--bd-method",
    type=click.Choice(BD_METHODS),
    default="cubic",
    show_default=True,
    help="Interpolation in results.md's BD tables (results.json has both).",
)
@click.option(
    "--refine-steps",
    type=click.IntRange(0, 10000),
    default=0,
    show_default=True,
    help="Encode ugicm files with this many latent refinement steps (ugicm encode --refine-steps).",
)
@click.option("--save-bitstreams", is_flag=True, help="Keep every encoded file under OUT/bitstreams/.")
@click.option("--quiet", is_flag=True, help="Print nothing but errors and the result paths.")
def eval_run(
    folder,
    out,
    qualities,
    baselines,
    baseline_qualities,
    preferences,
    tasks,
    degradations,
    seed,
    weights,
    device,
    threads,
    jobs,
    limit,
    anchors,
    models,
    bd_method,
    refine_steps,
    save_bitstreams,
    quiet,
):
    """Rate-distortion evaluation of ugicm and classic codecs on a folder of images.

    Every image is coded at every setting; bpp comes from the real size of each encoded file.
    Per-image records are appended to OUT/records.jsonl, so a rerun skips finished work (one run
    at a time per OUT: a second is refused while the first is running). Then
    averaged curves, BD-rate/BD-PSNR tables (against each other and, on Kodak, against the
    published anchors) and plots are written to OUT.

    With --tasks restore, degraded copies of the images (--degradations, --seed) are coded
    instead, decoded human and restore, and scored against the clean images next to the
    baselines (webp, avif) followed by classic restoration, and the first baseline on the clean
    images (the ceiling): one table, BD table and rate-PSNR plot per degradation.

    `ugicm eval FOLDER` is `ugicm eval run FOLDER`. Finished runs: `ugicm eval report DIR...` prints
    their tables (docs/results.md), `ugicm eval compare` pairs a decode of one run with another's.
    """
    import importlib.util

    from .runner import EvalPlan, parse_preferences
    from .shared import KODAK_ANCHORS_DIR, MODELS_DIR
    from .tasks import TaskError, make

    missing = [m for m in ("pytorch_msssim", "matplotlib") if importlib.util.find_spec(m) is None]
    if missing:
        _fail(f"ugicm eval needs {' and '.join(missing)}: pip install 'ugicm[eval]'", EXIT_USAGE)
    if out.resolve() == folder.resolve():
        raise click.BadParameter(
            "must not be the image folder (results would be read as images)", param_hint="--out"
        )
    task_names = list(dict.fromkeys(t.lower() for t in _split(tasks)))
    if "restore" in task_names:
        if len(task_names) > 1:
            raise click.UsageError("--tasks restore cannot be combined with other tasks")
        _eval_restore(click.get_current_context().params)
        return
    if degradations is not None:
        raise click.BadParameter("only with --tasks restore", param_hint="--degradations")
    quality_list = _qualities(qualities)
    try:
        prefs = parse_preferences(preferences)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--prefer") from None
    if quality_list and not prefs:
        raise click.BadParameter("give at least one preference", param_hint="--prefer")
    baseline_names = _baseline_names(baselines)
    ladder = _qualities(baseline_qualities, "--baseline-qualities", int) if baseline_qualities else None
    if not quality_list and not baseline_names:
        raise click.UsageError("nothing to evaluate: no ugicm qualities and no baselines")

    images, skipped = _images(folder, limit)
    model = _weights_model(weights) if quality_list else None

    task_objects = []
    try:
        for name in task_names:
            task = make(name, models or MODELS_DIR)
            task.prepare(images)
            task_objects.append(task)
    except TaskError as e:
        _fail(str(e), EXIT_USAGE)

    # The images' own folder: a dataset root holds them in images/, beside labels/ and masks/.
    plan = EvalPlan(
        folder=images[0].parent,
        out=out,
        images=images,
        qualities=quality_list,
        preferences=prefs,
        baselines=baseline_names,
        baseline_qualities=ladder or None,
        tasks=task_objects,
        model=model,
        device=device,
        threads=threads,
        jobs=jobs,
        save_bitstreams=save_bitstreams,
        anchors_dir=anchors or KODAK_ANCHORS_DIR,
        refine_steps=refine_steps,
    )
    status = _run_eval(plan, bd_method, quiet)
    sys.exit(EXIT_FAILED if skipped else status)


def _images(folder: Path, limit: int | None) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(the readable images of ``folder``, (path, why) of those left out); fails when none."""
    from .images import unreadable
    from .runner import find_images

    images = find_images(folder, limit)
    if not images:
        _fail(f"no images in {folder} (looked for .png, .jpg, .jpeg, .webp, .bmp, .tif, .ppm)", EXIT_USAGE)
    skipped = [(p, unreadable(p)) for p in images]
    skipped = [(p, why) for p, why in skipped if why]
    for path, why in skipped:
        click.echo(f"ugicm: error: {path.name}: {why}; left out", err=True)
    images = [p for p in images if p not in {s for s, _ in skipped}]
    if not images:
        _fail(f"no readable images in {folder}", EXIT_FAILED)
    return images, skipped


def _eval_restore(params: dict):
    """``ugicm eval --tasks restore``: every usage and set-up error is found before any image is
    coded or torch is imported."""
    from click.core import ParameterSource

    from . import baselines as baseline_codecs
    from . import restoration

    p = types.SimpleNamespace(**params)
    ctx = click.get_current_context()
    if ctx.get_parameter_source("preferences") not in (ParameterSource.DEFAULT, None):
        raise click.BadParameter(
            "--tasks restore decodes every file both ways (human and restore); leave --prefer out",
            param_hint="--prefer",
        )
    from ..degradations import EVALUATED

    try:
        degradation_list = restoration.parse_degradations(p.degradations or ",".join(EVALUATED))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--degradations") from None
    quality_list = _qualities(p.qualities)
    if ctx.get_parameter_source("baselines") in (ParameterSource.DEFAULT, None):
        p.baselines = restoration.DEFAULT_BASELINES
    baseline_names = _baseline_names(p.baselines)
    ladder = _qualities(p.baseline_qualities, "--baseline-qualities", int) if p.baseline_qualities else None
    if not quality_list and not baseline_names:
        raise click.UsageError("nothing to evaluate: no ugicm qualities and no baselines")
    missing = restoration.missing_libraries(degradation_list, baseline_names)
    if missing:
        _fail(
            f"the baselines' restoration needs {' and '.join(missing)}: pip install 'ugicm[eval]' "
            "(or --baselines none)",
            EXIT_USAGE,
        )
    images, skipped = _images(p.folder, p.limit)
    model = None
    if quality_list:  # the weights and their restore add-on, checked without torch
        from ..errors import WeightsError
        from ..weights import locate, restore_path

        try:
            info = locate(p.weights)
            addon = restore_path(info)
        except WeightsError as e:
            _fail(str(e), EXIT_WEIGHTS)
        model = {"name": info.name, "sha256": info.sha256, "path": str(info.path)}
        model["restore_sha256"] = _file_digest(addon)
    plan = restoration.RestorePlan(
        folder=images[0].parent,
        out=p.out,
        images=images,
        degradations=degradation_list,
        qualities=quality_list,
        baselines=baseline_names,
        ladders={
            name: list(ladder or restoration.LADDERS.get(name) or baseline_codecs.get(name).qualities)
            for name in baseline_names
        },
        model=model,
        seed=p.seed,
        device=p.device,
        threads=p.threads,
        jobs=p.jobs,
        refine_steps=p.refine_steps,
        save_bitstreams=p.save_bitstreams,
        nr=restoration.nr_measure(),
    )
    status = _run_eval(plan, p.bd_method, p.quiet, restore=True)
    sys.exit(EXIT_FAILED if skipped else status)


def _file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_eval(plan, bd_method: str, quiet: bool, restore: bool = False) -> int:
    from concurrent.futures.process import BrokenProcessPool

    from ..reporting import Reporter
    from .records import RecordLog, RecordsBusy
    from .runner import FatalError, execute, file_sha256

    if restore:
        from .restoration import Worker, is_done, plan_units, write_results
    else:
        from .runner import Worker, is_done, plan_units
        from .summary import write_results

    try:
        plan.out.mkdir(parents=True, exist_ok=True)
        plan.image_digests = {p.name: file_sha256(p) for p in plan.images}
        log = RecordLog(plan.out)
    except RecordsBusy as e:
        _fail(str(e), EXIT_USAGE)
    except OSError as e:
        _fail(f"cannot use {plan.out}: {e.strerror or e}", EXIT_USAGE)
    units = plan_units(plan)
    pending = [u for u in units if not is_done(u, plan, log.records)]
    if not quiet:
        skipped = len(units) - len(pending)
        n = len(plan.images)
        click.echo(
            f"eval: {n} image{'s' if n != 1 else ''}, {len(units)} units of work"
            + (f", {skipped} already in {log.path}" if skipped else ""),
            err=True,
        )
    reporter = Reporter(len(pending), quiet, False, False, "eval")

    def done(unit, records):
        if restore:
            rate = "uncoded" if records[0]["bpp"] is None else f"{records[0]['bpp']:.4f} bpp"
            scores = ", ".join(f"{r['curve']} {r['psnr']:.2f} dB" for r in records)
            reporter.ok({}, f"{unit.describe()}: {rate}, {scores}")
            return
        if unit.codec == "original":
            reporter.ok({}, f"{unit.image} original: task scores measured")
            return
        quality = ", ".join(
            f"{r['curve'].split('/')[-1]} {r['psnr']:.2f} dB" if "/" in r["curve"] else f"{r['psnr']:.2f} dB"
            for r in records
        )
        reporter.ok({}, f"{unit.describe()}: {records[0]['bpp']:.4f} bpp, {quality}")

    def failed(unit, message):
        reporter.error(unit.describe(), message)

    try:
        execute(plan, log, pending, done, failed, Worker)
    except FatalError as e:
        reporter.close()
        _fail(str(e), EXIT_WEIGHTS)
    except BrokenProcessPool:
        reporter.close()
        _fail(
            "a worker process died (out of memory?); finished measurements are kept, rerun to resume",
            EXIT_FAILED,
        )
    except KeyboardInterrupt:
        reporter.close()
        click.echo(f"ugicm: interrupted; finished measurements are in {log.path}, rerun to resume", err=True)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        log.close()
    status = reporter.close()
    write_results(plan, log.records, bd_method)
    names = ["results.md", "results.json"]
    if restore:
        names += [f"rate_psnr_{d.label}.png" for d in plan.degradations]
    else:
        names += ["rate_psnr.png", "rate_msssim.png"]
    for name in names:
        if (plan.out / name).exists():
            click.echo(str(plan.out / name))
    return status


@eval_command.command("report", context_settings=CONTEXT)
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the document here (docs/results.md); default: stdout.",
)
@click.option(
    "--against",
    multiple=True,
    metavar="RUN=OTHER",
    help="Also BD-rates of RUN's ugicm curves against another Kodak run's (repeatable).",
)
@click.option(
    "--ablation",
    multiple=True,
    metavar="RUN=ABLATION",
    help="A machine-task run of the ablation model's weights on RUN's files: one more column.",
)
@click.option(
    "--bench",
    "bench_json",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also the speed table of this `ugicm bench --json` file (docs/bench.json).",
)
@click.option(
    "--memory",
    "memory_json",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also the table of this `scripts/bench_memory.py --json` file (docs/memory.json).",
)
@click.option("--title", default="Measured results", show_default=True, help="The document's heading.")
def eval_report(runs, output, against, ablation, bench_json, memory_json, title):
    """The Markdown tables of finished `ugicm eval` runs, one section per RUN (an --out folder).

    Rate-distortion runs give per-quality rows of both decodes and the human decode's BD-rates;
    restore runs (--tasks restore) the restore decode's BD-rates per degradation; machine-task
    runs give the matched-rate table, the paired bootstrap intervals and, for classification,
    the sign test. The document names the command that made it.
    """
    from .report import ReportError, render

    command = "ugicm eval report " + " ".join(
        [str(r) for r in runs]
        + [f"--against {a}" for a in against]
        + [f"--ablation {a}" for a in ablation]
        + ([f"--bench {bench_json}"] if bench_json else [])
        + ([f"--memory {memory_json}"] if memory_json else [])
        + ([f"-o {output}"] if output else [])
    )
    try:
        text = render(
            [str(r) for r in runs],
            list(ablation),
            list(against),
            command=command,
            title=title,
            bench=bench_json,
            memory=memory_json,
        )
    except ReportError as e:
        _fail(str(e), EXIT_USAGE)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as e:
        _fail(f"cannot write {output}: {e.strerror or e}", EXIT_FAILED)
    click.echo(str(output), err=True)


@eval_command.command("compare", context_settings=CONTEXT)
@click.argument("run_a", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("curve_a")
@click.argument("run_b", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("curve_b")
@click.option(
    "--models",
    type=click.Path(file_okay=False, path_type=Path),
    help="Downstream models [default: the shared folder's models/].",
)
def eval_compare(run_a, curve_a, run_b, curve_b, models):
    """B − A of one decode across two `ugicm eval` runs on the same images, paired by image.

    CURVE_A and CURVE_B are curves of the runs' results (ugicm/human, ugicm/machine, webp, ...). For
    every task metric both runs scored, at every setting where both have every image: B − A in
    points with its 95 % paired bootstrap interval and the share of draws where B is not ahead,
    and the same for the mean over the settings.
    """
    from .compare import compare, table
    from .report import ReportError

    try:
        rows = compare(run_a, curve_a, run_b, curve_b, models)
    except ReportError as e:
        _fail(str(e), EXIT_USAGE)
    click.echo("\n".join(table(rows, f"B − A: {run_b} {curve_b} − {run_a} {curve_a}")))


# --------------------------------------------------------------------------------- bench
@click.command(context_settings=CONTEXT)
@click.argument("images", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--repeat",
    type=click.IntRange(1, 1000),
    default=3,
    show_default=True,
    help="Timed runs per configuration (after one warm-up run); the median is reported.",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write all figures here."
)
@click.option(
    "--codecs",
    default="ugicm,ugicm-machine,bmshj2018,jpeg,webp,avif",
    show_default=True,
    help="Which codecs to time (ugicm: the human decode, ugicm-machine: the machine decode of the "
    "same file; bmshj2018: CompressAI's hyperprior with random weights).",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, path_type=Path),
    help="Weights file or directory (default: the shipped model).",
)
@click.option(
    "--threads", type=click.IntRange(1, 256), help="Torch threads and AVIF encoder threads (default: all)."
)
@click.option("--no-cuda", is_flag=True, help="Time the learned codecs on the CPU only.")
@click.option(
    "--precision",
    type=click.Choice(["fast", "float32", "bfloat16"]),
    default="fast",
    show_default=True,
    help="ugicm's precision, for its encode and decode (see ugicm decode --precision).",
)
@click.option(
    "--batch",
    type=click.IntRange(0, 4096),
    default=0,
    show_default=True,
    metavar="N",
    help="Also time Codec.decode_batch of N copies of each ugicm file: same-size files "
    "synthesised together, the next batch parsed beside it (many files' throughput, MP/s).",
)
@click.option(
    "--startup",
    is_flag=True,
    help="Also time the first commands a shell user runs (help, errors, tiny encode and decode), "
    "each in a fresh interpreter, next to python -c 'import torch'.",
)
@click.option(
    "--compare-with",
    "compare_with",
    type=click.Path(exists=True, file_okay=False),
    help="Another checkout of ugicm (an earlier commit, e.g. from git worktree add): time its ugicm "
    "rows (and start-up lines) in the same run, as 'before'.",
)
@click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the before/after tables as Markdown here.",
)
def bench(
    images,
    repeat,
    json_path,
    codecs,
    weights,
    threads,
    no_cuda,
    precision,
    batch,
    startup,
    compare_with,
    markdown_path,
):
    """Encode/decode speed and peak memory per image, each configuration in a fresh process.

    Default image: kodim01 from ../shared/data/kodak, else a synthetic 768x512 image. Learned
    codecs run on the CPU and, when torch sees one, on CUDA.
    """
    import json

    from .bench import CODECS, LEARNED, codec_label, default_images, image_label, run_configuration

    chosen = [c.lower() for c in _split(codecs)]
    unknown = [c for c in chosen if c not in CODECS]
    if unknown or not chosen:
        raise click.BadParameter(f"choose from {', '.join(CODECS)}", param_hint="--codecs")
    if "avif" in chosen or "webp" in chosen:
        from .baselines import BASELINES

        for name in ("webp", "avif"):
            reason = BASELINES[name].unavailable_reason() if name in chosen else None
            if reason:
                _fail(f"{name}: {reason}", EXIT_USAGE)
    model = _weights_model(weights) if any(c.startswith("ugicm") for c in chosen) else None
    inputs = list(images) or default_images()

    rows = []
    cuda_available = False

    def run(codec, device, image, checkout=None):
        if not image.startswith("synthetic:"):
            image = str(Path(image).resolve())  # a --compare-with checkout runs in its own directory
        config = {"codec": codec, "device": device, "image": image, "repeat": repeat, "threads": threads}
        if codec.startswith("ugicm"):
            # The same process also decodes the image with CompressAI's hyperprior (bmshj2018).
            config.update(weights=model["path"], precision=precision, with_compressai=True)
            if batch and not checkout:
                config["batch"] = batch
        version = "before" if checkout else "after"
        click.echo(
            f"bench: {codec_label(codec)} on {device}, {image_label(image)}"
            + (f" ({checkout})" if checkout else "")
            + " …",
            err=True,
        )
        row = run_configuration(config, checkout=checkout)
        row["version"] = version
        if "error" in row:
            click.echo(f"ugicm: error: {codec} on {device}, {image_label(image)}: {row['error']}", err=True)
        rows.append(row)
        return row

    startup_rows = {}
    try:
        if startup:
            import tempfile

            from .bench import startup_lines

            work = Path(tempfile.mkdtemp(prefix="ugicm-bench-"))
            for version, checkout in (("after", None), ("before", compare_with)):
                if version == "after" or checkout:
                    click.echo(f"bench: start-up lines ({version}) …", err=True)
                    startup_rows[version] = startup_lines(work, repeat, checkout)
        for image in inputs:
            for codec in chosen:
                if compare_with and codec.startswith("ugicm"):
                    run(codec, "cpu", image, compare_with)
                row = run(codec, "cpu", image)
                cuda_available = cuda_available or bool(row.get("cuda_available"))
        if cuda_available and not no_cuda:
            for image in inputs:
                for codec in (c for c in chosen if c in LEARNED):
                    run(codec, "cuda", image)
    except KeyboardInterrupt:
        click.echo("ugicm: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)

    _print_bench_table(rows, repeat)
    if json_path:
        import platform

        report = {
            "repeat": repeat,
            "threads_requested": threads,
            "precision": precision,
            "batch": batch,
            "compare_with": compare_with,
            "startup": startup_rows,
            "host": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
            "results": rows,
            "notes": [
                "times: median of the timed runs after one warm-up run",
                "bmshj2018: CompressAI bmshj2018_hyperprior(quality=4, pretrained=False), random "
                "weights: its timing is real, its bpp is meaningless",
                "peak_rss_mib: the whole process; coding_rss_mib: rise of the peak while coding",
            ],
        }
        try:
            json_path.write_text(json.dumps(report, indent=1) + "\n")
        except OSError as e:
            _fail(f"cannot write {json_path}: {e.strerror or e}", EXIT_FAILED)
        click.echo(str(json_path), err=True)
    if markdown_path:
        from .bench import markdown_report

        command = "ugicm bench " + " ".join(sys.argv[2:])
        try:
            markdown_path.write_text(markdown_report(rows, startup_rows, command))
        except OSError as e:
            _fail(f"cannot write {markdown_path}: {e.strerror or e}", EXIT_FAILED)
        click.echo(str(markdown_path), err=True)
    sys.exit(EXIT_FAILED if any("error" in r for r in rows) else 0)


def _print_bench_table(rows: list[dict], repeat: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from .bench import image_label

    table = Table(
        title="ugicm bench",
        caption=(
            f"median of {repeat} timed run(s) after one warm-up · RSS: peak of the whole process, Δ: its rise "
            "while coding · * CompressAI bmshj2018_hyperprior(quality=4) with random weights: timing only, "
            "its bpp means nothing"
        ),
    )
    for name in (
        "image",
        "size",
        "codec",
        "device",
        "threads",
        "encode s",
        "decode s",
        "enc MP/s",
        "dec MP/s",
        "bpp",
        "RSS MiB",
        "Δ MiB",
        "GPU MiB",
    ):
        table.add_column(
            name, justify="left" if name in ("image", "codec", "device") else "right", no_wrap=True
        )
    for r in rows:
        codec = "bmshj2018 q4 *" if r["codec"] == "bmshj2018" else r["codec"]
        codec += " (before)" if r.get("version") == "before" else ""
        if "error" in r:
            table.add_row(image_label(r["image"]), "", codec, r["device"], "", "error: " + r["error"])
            continue
        table.add_row(
            image_label(r["image"]),
            f"{r['width']}x{r['height']}",
            codec,
            r["device"],
            str(r["threads"]),
            f"{r['encode_s']:.3f}",
            f"{r['decode_s']:.3f}",
            f"{r['encode_mp_per_s']:.2f}",
            f"{r['decode_mp_per_s']:.2f}",
            f"{r['bpp']:.3f}",
            f"{r['peak_rss_mib']:.0f}",
            f"{r['coding_rss_mib']:.0f}",
            f"{r['cuda_peak_mib']:.0f}" if "cuda_peak_mib" in r else "–",
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # piped: no terminal width to fit, keep rows on one line
    console.print(table)
