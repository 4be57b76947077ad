"""``ugicm``: a thin command-line front end over ugicm_codec (like cwebp/dwebp over libwebp).

Exit status: 0 success; 1 one or more inputs failed (unreadable, corrupt, other model); 2 usage
error; 3 model weights missing or altered; 130 interrupted. Torch is imported only by the
commands that need the model, so ``ugicm info`` is fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from . import __version__, container
from .errors import OutputError, UgicmError, WeightsError
from .outputs import OutputPlan, atomic_write, read_input

EXIT_FAILED, EXIT_USAGE, EXIT_WEIGHTS, EXIT_INTERRUPTED = 1, 2, 3, 130

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Reporter:
    """Per-file lines (or a rich progress bar on a terminal), JSON lines, and a final summary."""

    def __init__(self, total: int, quiet: bool, as_json: bool, json_to_stderr: bool, verb: str):
        self.total, self.quiet, self.as_json, self.verb = total, quiet, as_json, verb
        self.json_stream = sys.stderr if json_to_stderr else sys.stdout
        self.failed = 0
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
            print(json.dumps(record), file=self.json_stream, flush=True)
        if not self.quiet:
            if self.progress is not None:
                self.progress.console.print(line, highlight=False)
            else:
                print(line, file=sys.stderr, flush=True)
        self._advance()

    def error(self, name: str, message: str) -> None:
        self.failed += 1
        if self.as_json:
            print(json.dumps({"input": name, "error": message}), file=self.json_stream, flush=True)
        text = f"ugicm: error: {name}: {message}"
        if self.progress is not None:
            self.progress.console.print(text, style="red", highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)
        self._advance()

    def _advance(self) -> None:
        if self.progress is not None:
            self.progress.advance(self.task)

    def close(self) -> int:
        if self.progress is not None:
            self.progress.stop()
        if self.total > 1 and not self.quiet:
            print(f"{self.verb}: {self.total - self.failed} of {self.total} done, {self.failed} failed",
                  file=sys.stderr)
        return EXIT_FAILED if self.failed else 0


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _fail(message: str, code: int) -> None:
    click.echo(f"ugicm: error: {message}", err=True)
    sys.exit(code)


def _load_codec(weights, device, threads, max_pixels):
    try:
        from .codec import Codec

        return Codec(weights=weights, device=device, threads=threads, max_pixels=max_pixels)
    except WeightsError as e:
        _fail(str(e), EXIT_WEIGHTS)
    except UgicmError as e:
        _fail(str(e), EXIT_USAGE)


def _run_batch(inputs, plan: OutputPlan, reporter: Reporter, work) -> int:
    """Runs ``work(name, data) -> (bytes, record, line)`` over inputs; one failure never stops the rest."""
    debug = bool(os.environ.get("UGICM_DEBUG"))
    try:
        for name in inputs:
            try:
                target = plan.target(name)
                data = read_input(name)
                out, record, line = work(name, data)
                plan.write(target, out, source=name)
                record["output"] = str(target) if target != "-" else "-"
                reporter.ok(record, line.replace("{out}", "stdout" if target == "-" else str(target)))
            except WeightsError as e:
                reporter.close()
                _fail(str(e), EXIT_WEIGHTS)
            except UgicmError as e:
                reporter.error(name, str(e))
            except MemoryError:
                reporter.error(name, "out of memory")
            except Exception as e:  # never a traceback for a bad input; UGICM_DEBUG=1 shows it
                if debug:
                    raise
                reporter.error(name, f"unexpected {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    except KeyboardInterrupt:
        reporter.close()
        click.echo("ugicm: interrupted; finished outputs are complete, no partial file was left", err=True)
        sys.exit(EXIT_INTERRUPTED)
    return reporter.close()


# ---------------------------------------------------------------------------------- commands
@click.group(context_settings=CONTEXT)
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
    f = click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print one JSON line of stats per file.")(f)
    return f


@main.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output file, directory (several inputs), or - for stdout. "
              "Default: next to each input, with suffix .ugc.")
@click.option("-Q", "--quality", type=click.FloatRange(0, 100), default=None,
              help="Quality from 0 to 100, continuous (default 60).")
@click.option("--target-bpp", type=click.FloatRange(min=0, min_open=True),
              help="Search the continuous rate for the largest file within this many bits per pixel.")
@click.option("--strip", is_flag=True, help="Leave out the ICC profile and EXIF metadata.")
@_common
def encode(inputs, output, quality, target_bpp, strip, weights, device, threads, max_pixels, quiet, as_json):
    """Compress images (PNG, JPEG, WebP, TIFF, BMP; - for stdin) into .ugc files."""
    if quality is not None and target_bpp is not None:
        raise click.UsageError("give --quality or --target-bpp, not both")
    plan = _plan(inputs, output, ".ugc")
    codec = _load_codec(weights, device, threads, max_pixels)
    reporter = Reporter(len(inputs), quiet, as_json, plan.writes_stdout, "encode")

    def work(name, data):
        result = codec.encode_detailed(data, quality=quality, target_bpp=target_bpp, keep_metadata=not strip)
        record = {"input": name, "bytes": len(result.data), "width": result.width, "height": result.height,
                  "bpp": round(result.bpp, 5), "rate_level": round(result.level, 5),
                  "seconds": round(result.seconds, 4)}
        line = (f"{name} -> {{out}}: {result.width}x{result.height}, {len(result.data)} bytes, "
                f"{result.bpp:.4f} bpp, {result.seconds:.2f} s")
        return result.data, record, line

    sys.exit(_run_batch(inputs, plan, reporter, work))


@main.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output image (its suffix picks the format: .png, .webp, .tif, "
              ".bmp, .jpg), a directory, or - for PNG on stdout. Default: next to each input.")
@click.option("-p", "--prefer", default="human", show_default=True,
              help="human, machine, or any number between 0 (human) and 1 (machine).")
@_common
def decode(inputs, output, prefer, weights, device, threads, max_pixels, quiet, as_json):
    """Reconstruct images from .ugc files, for people or for machine analytics."""
    from .codec import parse_preference
    from .image_io import FORMATS_BY_SUFFIX

    try:
        beta = parse_preference(prefer)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--prefer") from None
    tag = {0.0: "human", 1.0: "machine"}.get(beta, f"p{beta:g}")
    plan = _plan(inputs, output, f".{tag}.png")
    codec = _load_codec(weights, device, threads, max_pixels)
    reporter = Reporter(len(inputs), quiet, as_json, plan.writes_stdout, "decode")

    def work(name, data):
        from .image_io import encode_image

        start = time.perf_counter()
        picture = codec.decode_picture(data, beta)
        seconds = time.perf_counter() - start
        target = plan.target(name)
        fmt = "PNG" if target == "-" else FORMATS_BY_SUFFIX.get(Path(target).suffix.lower())
        if fmt is None:
            raise OutputError(f"unknown output image suffix {Path(target).suffix!r} (use .png, .webp, .tif, .bmp or .jpg)")
        out = encode_image(picture.to_pil(), fmt)
        w, h = picture.size
        record = {"input": name, "width": w, "height": h, "prefer": beta, "bytes_in": len(data),
                  "bpp": round(len(data) * 8 / (w * h), 5), "seconds": round(seconds, 4)}
        line = f"{name} -> {{out}}: {w}x{h}, prefer {tag}, {seconds:.2f} s"
        return out, record, line

    sys.exit(_run_batch(inputs, plan, reporter, work))


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
