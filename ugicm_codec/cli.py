"""``ugicm``: a thin command-line front end over ugicm_codec (like cwebp/dwebp over libwebp).

Exit status: 0 success; 1 one or more inputs failed (unreadable, corrupt, other model); 2 usage
error; 3 model weights missing or altered; 130 interrupted; 141 the reader of our output closed
the pipe (``| head``), quietly, as ``cat`` does (``errors.EXIT_*``, shared with ``ugicm eval``).

Start-up stays short: this module imports no torch, numpy or CompressAI. Help, version, ``info``,
usage errors (``--prefer robot``), unreadable inputs and outputs that cannot be written are all
answered before the model loads (``_checked``); torch is imported only when coding starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import click

from . import __version__, container
from .errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    EXIT_WEIGHTS,
    OutputError,
    ReaderGoneError,
    UgicmError,
    WeightsError,
)
from .outputs import STDIO, OutputPlan, read_input
from .preferences import RESTORE, parse_preference, preference_tag
from .reporting import Reporter, _console, _pipe_guard  # noqa: F401  (Reporter: re-exported)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
PRECISIONS = ("fast", "float32", "bfloat16")  # synthesis.PRECISIONS, spelt out: no torch import here


def _terminate(signum, frame):
    raise KeyboardInterrupt


def _reader_gone() -> None:
    """Exit quietly: the reader has what it wanted (``| head``), and nobody is left to tell.
    The standard streams are pointed at /dev/null first, so that flushing them at exit cannot
    raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):  # not a real file (a test runner's capture)
            pass
    sys.exit(ReaderGoneError.exit_code)


def _fail(message: str, code: int) -> None:
    click.echo(f"ugicm: error: {message}", err=True)
    sys.exit(code)


def _checked(inputs, plan: OutputPlan, reporter: "Reporter", skip_existing: bool, check=None) -> list[str]:
    """The inputs worth loading the model for: each one is readable (and passes ``check(name,
    data)``, which raises UgicmError) and its output can be written; the others are reported as
    failed. Stdin and inputs that --skip-existing will skip are left to the batch."""
    kept = []
    for name in inputs:
        target = plan.target(name)
        if name == STDIO or (skip_existing and target != STDIO and Path(target).exists()):
            kept.append(name)
            continue
        try:
            if check is not None:
                check(name, read_input(name))
            else:
                _readable(name)
            if target != STDIO:
                _writable(Path(target))
        except UgicmError as e:
            reporter.error(name, str(e))
            continue
        kept.append(name)
    return kept


def _readable(name: str) -> None:
    try:
        with open(name, "rb") as f:
            f.read(1)
    except IsADirectoryError:
        raise UgicmError("is a directory") from None
    except OSError as e:
        raise UgicmError(f"cannot read: {e.strerror or e}") from None


def _writable(target: Path) -> None:
    """Whether ``target`` can be written: it is not a directory, and a file can be made in the
    nearest directory above it that exists (the batch makes any missing ones). Tried with a real,
    at once deleted file, so that read-only file systems and permissions (root's too) count."""
    import tempfile

    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a directory")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {target}: {parent} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise OutputError(f"cannot write {target}: {e.strerror or e}") from None


def _execute(
    inputs,
    plan: OutputPlan,
    reporter: "Reporter",
    job,
    job_args,
    codec_options: dict,
    jobs: int,
    skip_existing: bool,
    target_args=None,
    ray: str | None = None,
    check=None,
    restore: bool = False,
) -> None:
    """Runs a batch and exits with its status; set-up problems stop it with their own status.
    ``restore``: the job decodes with ``--prefer restore``, which needs the weights' add-on."""
    import signal

    from .batch import run_batch, set_progress
    from .weights import locate, restore_path

    # A kill (SIGTERM) unwinds like Ctrl-C, so the file being written is removed, not left half done.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        # Inputs that cannot be read and outputs that cannot be written are reported now, before
        # the weights are checked and the model loads (seconds), not after each file's coding.
        inputs = _checked(inputs, plan, reporter, skip_existing, check)
        if not inputs:
            sys.exit(reporter.close())
        info = locate(codec_options["weights"])  # fail fast, before any worker starts
        if restore:
            restore_path(info)
        work = (list(inputs), plan, reporter, job, job_args)
        shared = dict(codec_options=codec_options, skip_existing=skip_existing, target_args=target_args)
        if ray:
            from .cluster import run_on_ray

            code = run_on_ray(ray, *work, **shared)
        else:
            set_progress(reporter.tile_progress())  # a single large file on a terminal: its tiles
            code = run_batch(*work, jobs=jobs, **shared)
    except ReaderGoneError:
        if reporter.progress is not None:
            with contextlib.suppress(Exception):  # its terminal may be the pipe that closed
                reporter.progress.stop()
        _reader_gone()
    except WeightsError as e:
        reporter.close()
        _fail(str(e), EXIT_WEIGHTS)
    except UgicmError as e:
        reporter.close()
        _fail(str(e), EXIT_USAGE)
    except KeyboardInterrupt:
        reporter.close(interrupted=True)
        click.echo(
            "ugicm: interrupted; finished outputs are complete, no partial file was left "
            "(rerun with --skip-existing to finish)",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code)


# ---------------------------------------------------------------------------------- commands
class _Commands(click.Group):
    """Every command ends the same way when its reader leaves (click's own handler exits 1)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _reader_gone()


@click.group(cls=_Commands, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="ugicm")
def main():
    """ugicm: one compressed file, two decodes: one for people, one for machine analytics.

    \b
      ugicm encode photo.png -o photo.ugc
      ugicm decode photo.ugc --prefer human -o photo.png
      ugicm decode photo.ugc --prefer machine -o photo.machine.png
      ugicm info photo.ugc
      cat a.png | ugicm encode - -o - | ugicm decode - --prefer machine -o - > m.png
    """


def _run_common(inputs, plan: OutputPlan, kind: str, job, job_args, common: dict, **execute):
    """``_execute`` with the options every coding command takes (``_common``)."""
    reporter = Reporter(len(inputs), common["quiet"], common["as_json"], plan.writes_stdout, kind)
    codec = {k: common[k] for k in ("weights", "device", "threads", "max_pixels", "precision")}
    _execute(
        inputs,
        plan,
        reporter,
        job,
        job_args,
        codec,
        common["jobs"],
        common["skip_existing"],
        ray=common["ray"],
        **execute,
    )


def _common(f):
    f = click.option(
        "--weights",
        type=click.Path(dir_okay=True, path_type=Path),
        help="Weights file or directory (default: the shipped model).",
    )(f)
    f = click.option(
        "--device",
        default="auto",
        show_default=True,
        type=click.Choice(["auto", "cpu", "cuda"]),
        help="Where the transforms run.",
    )(f)
    f = click.option("--threads", type=click.IntRange(1, 256), help="CPU threads for torch.")(f)
    f = click.option(
        "--precision",
        type=click.Choice(PRECISIONS),
        default="fast",
        show_default=True,
        help="Arithmetic of the transforms: fast (the fastest within 0.05 dB of float32 on this "
        "hardware), float32 (the reference: the decode gives the same pixels on any thread "
        "count), or bfloat16. The parse is exact under all of them (formats/ugc.md).",
    )(f)
    f = click.option(
        "--max-pixels",
        type=click.IntRange(1),
        default=container.DEFAULT_MAX_PIXELS,
        show_default=True,
        help="Refuse images larger than this many pixels.",
    )(f)
    f = click.option("--quiet", is_flag=True, help="Print nothing but errors.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print one JSON line of stats per file.")(f)
    f = click.option(
        "-j",
        "--jobs",
        type=click.IntRange(1, 64),
        default=1,
        show_default=True,
        help="Worker processes for several files (each loads the model once).",
    )(f)
    f = click.option("--skip-existing", is_flag=True, help="Leave inputs whose output already exists.")(f)
    f = click.option(
        "--ray",
        metavar="ADDRESS",
        help="Code the files on Ray Data (pip install 'ugicm[ray]'): "
        "'local' starts a Ray on this machine, an address joins that cluster. Inputs must be "
        "paths every node can read; outputs are written here.",
    )(f)
    return f


@main.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    help="Output file, directory (several inputs), or - for stdout. "
    "Default: next to each input, with suffix .ugc.",
)
@click.option(
    "-q",
    "--quality",
    type=click.FloatRange(0, 100),
    default=None,
    help="Quality from 0 to 100, continuous (default 50): up to 80 the learned rate ladder, above "
    "it a residual layer for the human decode (about 40 dB on photos at 90, 44 dB at 100).",
)
@click.option(
    "--target-bpp",
    type=click.FloatRange(min=0, min_open=True),
    help="Search the continuous rate for the largest file within this many bits per pixel.",
)
@click.option(
    "--target-size",
    type=click.IntRange(min=1),
    metavar="BYTES",
    help="Search the continuous rate for the largest file of at most this many bytes.",
)
@click.option(
    "--target-psnr",
    type=click.FloatRange(min=0, max=100, min_open=True),
    metavar="DB",
    help="Search the continuous rate for the smallest file whose human decode reaches this "
    "PSNR (each probe decodes: about thirteen times as slow as one encode).",
)
@click.option(
    "--refine-steps",
    type=click.IntRange(0, 10000),
    default=0,
    show_default=True,
    help="Optimise each image's latent for the human decode with this many gradient steps "
    "before coding: smaller files at equal quality, the same format and decoder, a much "
    "slower encode (20 steps: about twenty times the plain encode's time on a CPU; docs/results.md).",
)
@click.option("--strip", is_flag=True, help="Leave out the ICC profile and EXIF metadata.")
@_common
def encode(inputs, output, quality, target_bpp, target_size, target_psnr, refine_steps, strip, **common):
    """Compress images (PNG, JPEG, WebP, TIFF, BMP; - for stdin) into .ugc files."""
    from .batch import encode_job
    from .rates import chosen_rate

    try:
        rate = chosen_rate(
            lambda k: "--" + k.replace("_", "-"),
            quality=quality,
            target_bpp=target_bpp,
            target_size=target_size,
            target_psnr=target_psnr,
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    _run_common(
        inputs, _plan(inputs, output, ".ugc"), "encode", encode_job, (rate, not strip, refine_steps), common
    )


@main.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    help="Output image (its suffix picks the format: any the installed Pillow "
    "writes, such as .png, .webp, .avif, .tif, .jpg), a directory, or - for PNG on stdout. "
    "Default: next to each input.",
)
@click.option(
    "-p",
    "--prefer",
    default="human",
    show_default=True,
    help="human, machine, any number between 0 (human) and 1 (machine), or restore (an "
    "estimate of the clean image behind a noisy, blurred, dark or JPEG-damaged one).",
)
@_common
def decode(inputs, output, prefer, **common):
    """Reconstruct images from .ugc files, for people or for machine analytics."""
    from .batch import decode_job, output_format

    try:
        beta = parse_preference(prefer)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--prefer") from None
    tag = preference_tag(beta)
    plan = _plan(inputs, output, f".{tag}.png")
    try:
        for name in inputs:  # an unknown output suffix is a usage error, found before any work
            output_format(plan.target(name))
    except OutputError as e:
        raise click.UsageError(str(e)) from None
    _run_common(
        inputs,
        plan,
        "decode",
        decode_job,
        (beta,),
        common,
        target_args=lambda target: (output_format(target),),
        check=lambda name, data: container.parse(data, common["max_pixels"]),
        restore=beta == RESTORE,
    )


@main.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
@click.option("--max-pixels", type=click.IntRange(1), default=container.DEFAULT_MAX_PIXELS, show_default=True)
def info(files, as_json, max_pixels):
    """Print the header of .ugc files (fast: loads no model)."""
    failed = 0
    for name in files:
        try:
            data = read_input(name)
            f = container.parse(data, max_pixels)
        except UgicmError as e:
            failed += 1
            click.echo(f"ugicm: error: {name}: {e}", err=True)
            continue
        summary = container.describe(f, len(data))
        if as_json:
            click.echo(json.dumps({"file": name, **summary}))
            continue
        click.echo(f"{name}:")
        click.echo(f"  format      .ugc version {summary['format_version']}")
        click.echo(f"  model       {summary['model']} (weights {summary['weights_digest']})")
        click.echo(f"  image       {f.width}x{f.height} {f.colour_mode}")
        click.echo(f"  rate level  {summary['rate_level']:g}")
        if f.residual is not None:
            step = summary["residual_step"]
            click.echo(f"  residual    step {step:g} grey levels" if step else "  residual    damaged header")
        click.echo(
            f"  latents     y {f.y_shape[0]}x{f.y_shape[1]}, z {f.z_shape[0]}x{f.z_shape[1]}, "
            f"{len(f.tiles)} tile(s) of {summary['tile_pixels']} px"
        )
        extras = [
            name
            for name, present in (("alpha", f.alpha), ("ICC profile", f.icc_profile), ("EXIF", f.exif))
            if present
        ]
        if extras:
            click.echo(f"  carries     {', '.join(extras)}")
        click.echo(f"  size        {len(data)} bytes, {summary['bpp']:.4f} bpp")
        chunks = ", ".join(f"{k} {v} B" for k, v in summary["chunks"].items())
        click.echo(f"  chunks      {chunks}")
    sys.exit(EXIT_FAILED if failed else 0)


def _plan(inputs, output, suffix) -> OutputPlan:
    try:
        return OutputPlan(list(inputs), output, suffix)
    except OutputError as e:
        raise click.UsageError(str(e)) from None


from .training.cli import train, train_context, train_restore  # noqa: E402  (imports torch lazily)

main.add_command(train)
main.add_command(train_context)
main.add_command(train_restore)
from .evaluation.cli import bench, eval_command  # noqa: E402

main.add_command(eval_command, name="eval")
main.add_command(bench)

if __name__ == "__main__":
    main()
