"""``ugicm``: a thin command-line front end over ugicm_codec (like cwebp/dwebp over libwebp).

Exit status: 0 success; 1 one or more inputs failed (unreadable, corrupt, other model); 2 usage
error; 3 model weights missing or altered; 130 interrupted; 141 the reader of our output closed
the pipe (``| head``), quietly, as ``cat`` does. Torch is imported only by the
commands that need the model, so ``ugicm info`` is fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import click

from . import __version__, container
from .errors import OutputError, ReaderGoneError, UgicmError, WeightsError
from .outputs import OutputPlan, read_input

EXIT_FAILED, EXIT_USAGE, EXIT_WEIGHTS, EXIT_INTERRUPTED = 1, 2, 3, 130

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Reporter:
    """Per-file lines (or a rich progress bar on a terminal), JSON lines, and a final summary."""

    def __init__(self, total: int, quiet: bool, as_json: bool, json_to_stderr: bool, verb: str):
        self.total, self.quiet, self.as_json, self.verb = total, quiet, as_json, verb
        self.json_stream = sys.stderr if json_to_stderr else sys.stdout
        self.failed = self.skips = 0
        self.closed = False
        self.progress = None
        if total > 1 and not quiet and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TimeRemainingColumn(), transient=True,
                                     console=_console())
            self.task = self.progress.add_task(verb, total=total)
            self.progress.start()

    def ok(self, record: dict, line: str) -> None:
        if self.as_json:
            self._json(record)
        if not self.quiet:
            self._print(line)
        self._advance()

    def skipped(self, name: str, target) -> None:
        if self.as_json:
            self._json({"input": name, "output": str(target), "skipped": True})
        if not self.quiet:
            self._print(f"{name}: skipped, {target} exists")
        self.skips += 1
        self._advance()

    def error(self, name: str, message: str) -> None:
        self.failed += 1
        if self.as_json:
            self._json({"input": name, "error": message})
        self._print(f"ugicm: error: {name}: {message}", style="red")
        self._advance()

    def _json(self, record: dict) -> None:
        with _pipe_guard():
            print(json.dumps(record), file=self.json_stream, flush=True)

    def _print(self, line: str, style: str | None = None) -> None:
        with _pipe_guard():
            if self.progress is not None:
                self.progress.console.print(line, style=style, highlight=False)
            else:
                print(line, file=sys.stderr, flush=True)

    def _advance(self) -> None:
        if self.progress is not None:
            self.progress.advance(self.task)

    def close(self) -> int:
        if self.closed:
            return EXIT_FAILED if self.failed else 0
        self.closed = True
        if self.progress is not None:
            self.progress.stop()
        if self.total > 1 and not self.quiet:
            done = self.total - self.failed - self.skips
            skipped = f", {self.skips} skipped" if self.skips else ""
            with _pipe_guard():
                print(f"{self.verb}: {done} of {self.total} done{skipped}, {self.failed} failed", file=sys.stderr)
        return EXIT_FAILED if self.failed else 0


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _terminate(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def _pipe_guard():
    try:
        yield
    except BrokenPipeError:
        raise ReaderGoneError("the reader of our output closed the pipe") from None


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


def _execute(inputs, plan: OutputPlan, reporter: "Reporter", job, job_args, codec_options: dict,
             jobs: int, skip_existing: bool, target_args=None) -> None:
    """Runs a batch and exits with its status; set-up problems stop it with their own status."""
    import signal

    from .batch import run_batch
    from .weights import locate

    # A kill (SIGTERM) unwinds like Ctrl-C, so the file being written is removed, not left half done.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        locate(codec_options["weights"])  # fail fast, before any worker starts
        code = run_batch(list(inputs), plan, reporter, job, job_args, codec_options=codec_options,
                         jobs=jobs, skip_existing=skip_existing, target_args=target_args)
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
        reporter.close()
        click.echo("ugicm: interrupted; finished outputs are complete, no partial file was left "
                   "(rerun with --skip-existing to finish)", err=True)
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


def _common(f):
    f = click.option("--weights", type=click.Path(dir_okay=True, path_type=Path),
                     help="Weights file or directory (default: the shipped model).")(f)
    f = click.option("--device", default="auto", show_default=True,
                     type=click.Choice(["auto", "cpu", "cuda"]), help="Where the transforms run.")(f)
    f = click.option("--threads", type=click.IntRange(1, 256), help="CPU threads for torch.")(f)
    f = click.option("--max-pixels", type=click.IntRange(1), default=container.DEFAULT_MAX_PIXELS,
                     show_default=True, help="Refuse images larger than this many pixels.")(f)
    f = click.option("--quiet", is_flag=True, help="Print nothing but errors.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print one JSON line of stats per file.")(f)
    f = click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
                     help="Worker processes for several files (each loads the model once).")(f)
    f = click.option("--skip-existing", is_flag=True, help="Leave inputs whose output already exists.")(f)
    return f


@main.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output file, directory (several inputs), or - for stdout. "
              "Default: next to each input, with suffix .ugc.")
@click.option("-q", "--quality", type=click.FloatRange(0, 100), default=None,
              help="Quality from 0 to 100, continuous (default 60).")
@click.option("--target-bpp", type=click.FloatRange(min=0, min_open=True),
              help="Search the continuous rate for the largest file within this many bits per pixel.")
@click.option("--target-size", type=click.IntRange(min=1), metavar="BYTES",
              help="Search the continuous rate for the largest file of at most this many bytes.")
@click.option("--target-psnr", type=click.FloatRange(min=0, max=100, min_open=True), metavar="DB",
              help="Search the continuous rate for the smallest file whose human decode reaches this "
              "PSNR (each probe decodes: about thirteen times as slow as one encode).")
@click.option("--refine-steps", type=click.IntRange(0, 10000), default=0, show_default=True,
              help="Optimise each image's latent for the human decode with this many gradient steps "
              "before coding: smaller files at equal quality, the same format and decoder, a much "
              "slower encode (20 steps: about 16 s for a Kodak image on 2 CPU cores with bf16, 29 s without).")
@click.option("--strip", is_flag=True, help="Leave out the ICC profile and EXIF metadata.")
@_common
def encode(inputs, output, quality, target_bpp, target_size, target_psnr, refine_steps, strip, weights, device,
           threads, max_pixels, quiet, as_json, jobs, skip_existing):
    """Compress images (PNG, JPEG, WebP, TIFF, BMP; - for stdin) into .ugc files."""
    from .batch import encode_job

    rate = {k: v for k, v in dict(quality=quality, target_bpp=target_bpp, target_size=target_size,
                                  target_psnr=target_psnr).items() if v is not None}
    if len(rate) > 1:
        raise click.UsageError("give one of " + " and ".join("--" + k.replace("_", "-") for k in rate) + ", not more")
    plan = _plan(inputs, output, ".ugc")
    reporter = Reporter(len(inputs), quiet, as_json, plan.writes_stdout, "encode")
    options = dict(weights=weights, device=device, threads=threads, max_pixels=max_pixels)
    _execute(inputs, plan, reporter, encode_job, (rate, not strip, refine_steps), options, jobs,
             skip_existing)


@main.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output image (its suffix picks the format: .png, .webp, .tif, "
              ".bmp, .jpg), a directory, or - for PNG on stdout. Default: next to each input.")
@click.option("-p", "--prefer", default="human", show_default=True,
              help="human, machine, or any number between 0 (human) and 1 (machine).")
@_common
def decode(inputs, output, prefer, weights, device, threads, max_pixels, quiet, as_json, jobs, skip_existing):
    """Reconstruct images from .ugc files, for people or for machine analytics."""
    from .batch import decode_job, output_format
    from .codec import parse_preference

    try:
        beta = parse_preference(prefer)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--prefer") from None
    tag = {0.0: "human", 1.0: "machine"}.get(beta, f"p{beta:g}")
    plan = _plan(inputs, output, f".{tag}.png")
    try:
        for name in inputs:  # an unknown output suffix is a usage error, found before any work
            output_format(plan.target(name))
    except OutputError as e:
        raise click.UsageError(str(e)) from None
    reporter = Reporter(len(inputs), quiet, as_json, plan.writes_stdout, "decode")
    options = dict(weights=weights, device=device, threads=threads, max_pixels=max_pixels)
    _execute(inputs, plan, reporter, decode_job, (beta,), options, jobs, skip_existing,
             target_args=lambda target: (output_format(target),))


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
        click.echo(f"  latents     y {f.y_shape[0]}x{f.y_shape[1]}, z {f.z_shape[0]}x{f.z_shape[1]}, "
                   f"{len(f.tiles)} tile(s) of {summary['tile_pixels']} px")
        extras = [name for name, present in (("alpha", f.alpha), ("ICC profile", f.icc_profile), ("EXIF", f.exif)) if present]
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


from .training.cli import train  # noqa: E402  (registers `ugicm train`; imports torch lazily)

main.add_command(train)
from .evaluation.cli import bench, eval_command  # noqa: E402
main.add_command(eval_command, name="eval")
main.add_command(bench)

if __name__ == "__main__":
    main()
