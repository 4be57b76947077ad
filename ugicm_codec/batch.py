"""Running encode/decode over many files: one model load per process, optional worker processes,
per-file failures that never stop the batch, atomic outputs, and skipping finished outputs.

Jobs are module-level functions over a per-process codec so that the same code runs in-process
(``jobs=1``) and in a ``ProcessPoolExecutor`` (``jobs>1``). Importing this module imports no torch.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from .errors import OutputError, ReaderGoneError, UgicmError, WeightsError
from .outputs import STDIO, OutputPlan, read_input
from .preferences import preference_tag

_codec = None  # this process's Codec
# progress(done, total) for the tiles of the file being coded in this process (a single large
# file on a terminal), or None. Never set in worker processes.
_progress = None


def set_progress(callback) -> None:
    global _progress
    _progress = callback


def init_codec(options: dict) -> None:
    global _codec
    from .codec import Codec

    _codec = Codec(**options)


def encode_job(name: str, data: bytes, rate: dict, keep_metadata: bool, refine_steps: int = 0):
    """``rate``: the keyword that sets the rate (``quality``, ``target_bpp``, ``target_size`` or
    ``target_psnr``), or none for the default quality."""
    result = _codec.encode_detailed(
        data, keep_metadata=keep_metadata, refine_steps=refine_steps, progress=_progress, **rate
    )
    record = {
        "input": name,
        "bytes": len(result.data),
        "width": result.width,
        "height": result.height,
        "bpp": round(result.bpp, 5),
        "rate_level": round(result.level, 5),
        "refine_steps": refine_steps,
        "seconds": round(result.seconds, 4),
    }
    psnr = "" if result.psnr is None else f", {result.psnr:.2f} dB"
    line = (
        f"{name} -> {{out}}: {result.width}x{result.height}, {len(result.data)} bytes, "
        f"{result.bpp:.4f} bpp{psnr}, {result.seconds:.2f} s"
    )
    if result.psnr is not None:
        record["psnr"] = round(result.psnr, 3)
    if result.target_met is not None:
        # A target can be out of the model's reach (a tiny budget, a PSNR above its top rate):
        # the nearest file is written, and said so.
        record["target_met"] = result.target_met
        if not result.target_met:
            line += f" ({_missed(rate)})"
    return result.data, record, line


def _missed(rate: dict) -> str:
    if "target_psnr" in rate:
        return f"under the {rate['target_psnr']:g} dB target: the model's highest rate"
    budget = f"{rate['target_size']} byte" if "target_size" in rate else f"{rate['target_bpp']:g} bpp"
    return f"over the {budget} target: the model's lowest rate"


def decode_job(name: str, data: bytes, beta: float | str, fmt: str):
    from .image_io import encode_image

    start = time.perf_counter()
    picture = _codec.decode_picture(data, beta, progress=_progress)
    seconds = time.perf_counter() - start
    out = encode_image(picture.to_pil(), fmt)
    w, h = picture.size
    tag = preference_tag(beta, prefix="")
    record = {
        "input": name,
        "width": w,
        "height": h,
        "prefer": beta,
        "bytes_in": len(data),
        "bpp": round(len(data) * 8 / (w * h), 5),
        "seconds": round(seconds, 4),
    }
    return out, record, f"{name} -> {{out}}: {w}x{h}, prefer {tag}, {seconds:.2f} s"


def _describe(e: BaseException) -> str:
    if isinstance(e, UgicmError):
        return str(e)
    if isinstance(e, MemoryError):
        return "out of memory"
    text = str(e).splitlines()[0] if str(e) else ""
    return f"unexpected {type(e).__name__}: {text}"


def run_batch(
    inputs: list[str],
    plan: OutputPlan,
    reporter,
    job,
    job_args,
    *,
    codec_options: dict,
    jobs: int = 1,
    skip_existing: bool = False,
    target_args=None,
) -> int:
    """Runs ``job(name, data, *job_args, *target_args(target))`` for every input.

    Raises WeightsError (a set-up problem: stop everything) and KeyboardInterrupt; every other
    failure is reported for its file and the batch goes on. Returns the reporter's exit status.
    """
    debug = bool(os.environ.get("UGICM_DEBUG"))
    target_args = target_args or (lambda target: ())
    todo = []
    for name in inputs:
        target = plan.target(name)
        if skip_existing and target != STDIO and Path(target).exists():
            reporter.skipped(name, target)
            continue
        todo.append((name, target))

    def finish(name, target, outcome):
        out, record, line = outcome
        plan.write(target, out, source=name)
        record["output"] = str(target)
        reporter.ok(record, line.replace("{out}", "stdout" if target == STDIO else str(target)))

    def fail(name, e):
        if isinstance(e, (WeightsError, ReaderGoneError)):  # nothing more can be done or said
            raise e
        if debug and not isinstance(e, UgicmError):
            raise e
        reporter.error(name, _describe(e))

    if jobs <= 1 or len(todo) <= 1:
        init_codec(codec_options)
        for name, target in todo:
            try:
                data = read_input(name)
                finish(name, target, job(name, data, *job_args, *target_args(target)))
            except Exception as e:  # noqa: BLE001 - reported per file, see fail()
                fail(name, e)
        return reporter.close()

    # Worker processes: split the CPU threads between them; each loads the model once.
    options = dict(codec_options)
    options["threads"] = options.get("threads") or max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(max_workers=jobs, initializer=init_codec, initargs=(options,)) as pool:
        pending = {}
        queue = list(todo)
        try:
            while queue or pending:
                while queue and len(pending) < 2 * jobs:
                    name, target = queue.pop(0)
                    try:
                        data = read_input(name)
                    except UgicmError as e:
                        fail(name, e)
                        continue
                    future = pool.submit(job, name, data, *job_args, *target_args(target))
                    pending[future] = (name, target)
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    name, target = pending.pop(future)
                    try:
                        finish(name, target, future.result())
                    except Exception as e:  # noqa: BLE001
                        fail(name, e)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return reporter.close()


def output_format(target) -> str:
    """The Pillow format a decode's output suffix asks for: any format the installed Pillow can
    write (PNG, WebP, TIFF, JPEG, AVIF where Pillow has it, ...), but not .ugc itself."""
    from .image_io import FORMATS_BY_SUFFIX, writable_formats

    if target == STDIO:
        return "PNG"
    suffix = Path(target).suffix.lower()
    if suffix in FORMATS_BY_SUFFIX:  # the common ones, without loading every Pillow plugin (0.1-0.5 s)
        return FORMATS_BY_SUFFIX[suffix]
    formats = writable_formats()
    fmt = formats.get(suffix)
    if fmt is None:
        known = ", ".join(
            s for s in (".png", ".webp", ".avif", ".jxl", ".jpg", ".tif", ".bmp") if s in formats
        )
        what = (
            f"output image suffix {suffix!r}" if suffix else f"output {Path(target).name!r} without a suffix"
        )
        raise OutputError(f"unknown {what} (use one the installed Pillow writes: {known}, ...)")
    return fmt
