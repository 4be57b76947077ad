"""Encoding and decoding a corpus on Ray Data (``pip install ugicm[ray]``).

    >>> from ugicm_codec.cluster import encode_on_ray, decode_on_ray
    >>> records = encode_on_ray(["a.png", "b.png"], "out/", address="local", quality=60)
    >>> records = decode_on_ray(["out/a.ugc"], "decoded/", prefer="machine", suffix=".png")

or ``ugicm encode --ray ADDRESS IN... -o DIR`` (``local`` starts a Ray on this machine; any other
address joins that cluster, as ``ray.init(address=...)``).

The files go through a Ray Data ``map_batches`` on a pool of actors, each of which loads the model
once (one GPU each where the cluster has GPUs, else one CPU each) and codes with the very
functions of a local batch (``batch.encode_job`` / ``decode_job``), so a file coded on Ray is the
file a local run makes. The actors read the inputs (on a cluster, from paths every node can
read: a shared filesystem); the outputs come back to this process, which writes each one
atomically, as a local batch does. A file that fails is reported and the rest go on.
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
from pathlib import Path

from .errors import UgicmError
from .outputs import STDIO, OutputPlan


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise UgicmError(f"--ray needs Ray Data: pip install 'ugicm[ray]' ({e})") from None
    return ray


class _Coder:
    """A Ray Data actor: loads the model once, then codes one file per row.

    A set-up failure (weights, device) is kept and handed back with every row rather than
    raised: Ray would report it as a dead actor, its ugicm message buried in a stack trace."""

    def __init__(self, job, job_args: tuple, codec_options: dict, sha256: str):
        from . import batch
        from .errors import WeightsError

        self.job, self.job_args, self.fatal = job, job_args, None
        try:
            batch.init_codec(codec_options)
            # A node with other weights (another ugicm release) would make files this machine's
            # decoder refuses, or decode others wrongly: refuse to start instead.
            if batch._codec.info.sha256 != sha256:
                raise WeightsError(
                    f"a Ray node loaded other weights ({batch._codec.info.path}, sha256 "
                    f"{batch._codec.info.sha256[:16]}…) than this machine ({sha256[:16]}…)"
                )
        except UgicmError as e:
            self.fatal = e

    def __call__(self, rows: dict) -> dict:
        from .batch import _describe
        from .outputs import read_input

        names = list(rows["input"])
        if self.fatal is not None:
            return {
                "input": names,
                "payload": [b""] * len(names),
                "error": [""] * len(names),
                "fatal": [pickle.dumps(self.fatal)] * len(names),
            }
        payloads, errors = [], []
        for name, extra in zip(names, rows["extra"]):
            try:
                outcome = self.job(name, read_input(name), *self.job_args, *pickle.loads(extra))
                payloads.append(pickle.dumps(outcome))
                errors.append("")
            except Exception as e:  # noqa: BLE001 - reported for its file by the driver
                payloads.append(b"")
                errors.append(_describe(e) or "failed")
        return {"input": names, "payload": payloads, "error": errors, "fatal": [b""] * len(names)}


def _connect(ray, address: str, num_cpus: int | None) -> bool:
    """Joins (or, for ``local``, starts) a Ray; returns whether this call started it."""
    if ray.is_initialized():
        return False
    options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        if address == "local":
            ray.init(num_cpus=num_cpus, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UgicmError(
            f"cannot reach Ray at {address}: {str(e).splitlines()[0] if str(e) else e}"
        ) from None
    return True


def run_on_ray(
    address: str,
    inputs: list[str],
    plan: OutputPlan,
    reporter,
    job,
    job_args: tuple,
    *,
    codec_options: dict,
    skip_existing: bool = False,
    target_args=None,
    actors: int | None = None,
    num_cpus: int | None = None,
) -> int:
    """``batch.run_batch`` on Ray: the same jobs, plan and reporter; returns the reporter's status.
    ``actors``: how many (default: one a GPU where there are GPUs, else one a CPU);
    ``num_cpus``: the CPUs of a ``local`` Ray (default: all)."""
    ray = _ray()
    if STDIO in inputs or plan.writes_stdout:
        raise UgicmError("--ray reads and writes files: give input paths and -o DIR")
    target_args = target_args or (lambda target: ())
    todo = []
    for name in inputs:
        target = plan.target(name)
        if skip_existing and Path(target).exists():
            reporter.skipped(name, target)
            continue
        todo.append({"input": str(name), "extra": pickle.dumps(tuple(target_args(target))), "target": target})
    if not todo:
        return reporter.close()
    started = _connect(ray, address, num_cpus)
    try:
        from ray.data import DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = False  # the reporter says what is done
        context.print_on_execution_start = False
        context.enable_auto_log_stats = False
        # A failed run is reported in one line below; Ray Data would log its whole stack first.
        context.log_internal_stack_trace = False
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        from .weights import locate

        options = dict(codec_options)
        # The actors do not see this process's environment: name the weights it would use.
        if options.get("weights") is None and os.environ.get("UGICM_WEIGHTS"):
            options["weights"] = os.environ["UGICM_WEIGHTS"]
        expected = locate(options.get("weights")).sha256
        device = options.get("device") or "auto"
        if device.startswith("cuda") and not gpus:
            raise UgicmError("--device cuda was asked for, but this Ray cluster has no GPU")
        gpus = 0 if device == "cpu" else gpus  # auto: GPUs where the cluster has them
        if gpus:
            options["device"] = "cuda"
        else:
            options["device"] = "cpu"
            options["threads"] = options.get("threads") or 1  # one CPU an actor
        size = max(1, min(actors or (gpus or cpus), len(todo)))
        targets = {row["input"]: row["target"] for row in todo}
        rows = [{"input": row["input"], "extra": row["extra"]} for row in todo]
        with warnings.catch_warnings():
            # max_restarts goes through ray_remote_args, which Ray deprecates without naming a
            # parameter in its place yet
            warnings.simplefilter("ignore")
            dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
                _Coder,
                batch_size=1,
                concurrency=size,
                num_gpus=1 if gpus else 0,
                num_cpus=0 if gpus else 1,
                fn_constructor_kwargs=dict(
                    job=job, job_args=tuple(job_args), codec_options=options, sha256=expected
                ),
                max_restarts=0,
            )  # a model that fails to load fails the run, not a restart loop
        for row in dataset.iter_rows():
            name = row["input"]
            if row["fatal"]:
                raise pickle.loads(row["fatal"])  # a set-up problem of the actors: stop the run
            if row["error"]:
                reporter.error(name, row["error"])
                continue
            out, record, line = pickle.loads(row["payload"])
            target = targets[name]
            try:
                plan.write(target, out, source=name)
            except UgicmError as e:
                reporter.error(name, str(e))
                continue
            record["output"] = str(target)
            reporter.ok(record, line.replace("{out}", str(target)))
    except UgicmError:
        raise
    except Exception as e:  # noqa: BLE001 - a set-up failure of the whole run (weights, actors)
        from .batch import _describe

        # Ray wraps an actor's exception (RayTaskError, ActorDiedError ...): find the ugicm one.
        cause, seen = e, set()
        while id(cause) not in seen and not isinstance(cause, UgicmError):
            seen.add(id(cause))
            inner = getattr(cause, "cause", None) or cause.__cause__
            if not isinstance(inner, BaseException):
                break
            cause = inner
        if isinstance(cause, UgicmError):
            raise cause from None
        raise UgicmError(f"the Ray run failed: {_describe(cause)}") from None
    finally:
        if started:
            ray.shutdown()
    return reporter.close()


class _Collect:
    """A reporter for the library functions: keeps every record, prints nothing."""

    def __init__(self):
        self.records: list[dict] = []

    def ok(self, record: dict, line: str) -> None:
        self.records.append(record)

    def skipped(self, name: str, target) -> None:
        self.records.append({"input": name, "output": str(target), "skipped": True})

    def error(self, name: str, message: str) -> None:
        self.records.append({"input": name, "error": message})

    def close(self) -> int:
        return 0


def encode_on_ray(
    inputs: list[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    address: str = "local",
    quality: float | None = None,
    target_bpp: float | None = None,
    target_size: int | None = None,
    target_psnr: float | None = None,
    keep_metadata: bool = True,
    refine_steps: int = 0,
    weights: str | os.PathLike | None = None,
    skip_existing: bool = False,
    actors: int | None = None,
    num_cpus: int | None = None,
) -> list[dict]:
    """Encodes ``inputs`` into ``output_dir`` (NAME.ugc each) on Ray; returns one record a file,
    as ``ugicm encode --json`` prints them (``{"input", "error"}`` for a file that failed)."""
    from .batch import encode_job
    from .rates import chosen_rate

    rate = chosen_rate(
        quality=quality, target_bpp=target_bpp, target_size=target_size, target_psnr=target_psnr
    )
    names = [str(i) for i in inputs]
    plan = OutputPlan(names, str(output_dir) + os.sep, ".ugc")
    job = (encode_job, (rate, keep_metadata, refine_steps))
    return _collected(address, names, plan, job, weights, skip_existing, actors, num_cpus)


def decode_on_ray(
    inputs: list[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    address: str = "local",
    prefer: str | float = "human",
    suffix: str = ".png",
    weights: str | os.PathLike | None = None,
    skip_existing: bool = False,
    actors: int | None = None,
    num_cpus: int | None = None,
) -> list[dict]:
    """Decodes ``inputs`` into ``output_dir`` (NAME + ``suffix``, whose format it picks) on Ray."""
    from .batch import decode_job, output_format
    from .preferences import parse_preference

    beta = parse_preference(prefer)
    names = [str(i) for i in inputs]
    plan = OutputPlan(names, str(output_dir) + os.sep, suffix)
    fmt = output_format(plan.target(names[0])) if names else "PNG"
    job = (decode_job, (beta,))
    return _collected(
        address, names, plan, job, weights, skip_existing, actors, num_cpus, lambda target: (fmt,)
    )


def _collected(
    address, names, plan, job, weights, skip_existing, actors, num_cpus, target_args=None
) -> list[dict]:
    """``run_on_ray`` of ``job`` (the job function and its arguments) on ``names`` with the
    library's codec options; the records it reports, one a file."""
    reporter = _Collect()
    run_on_ray(
        address,
        names,
        plan,
        reporter,
        *job,
        codec_options=dict(weights=weights, device="auto", threads=None, max_pixels=_max_pixels()),
        skip_existing=skip_existing,
        target_args=target_args,
        actors=actors,
        num_cpus=num_cpus,
    )
    return reporter.records


def _max_pixels() -> int:
    from .container import DEFAULT_MAX_PIXELS

    return DEFAULT_MAX_PIXELS
