"""The evaluation run: every image through ugicm and the baselines, one record per measurement.

Work is cut into units: one image at one setting of one codec. A ugicm unit encodes once and
decodes once per preference (human, machine, …), giving one record per preference, all sharing
the real size of the one .ugc file. Units already in ``records.jsonl`` are skipped, so an
interrupted or extended run picks up where it stopped. Units run in this process (``jobs=1``) or
in a pool of worker processes; only this process writes records.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import UgicmError, WeightsError
from ..preferences import parse_preference, preference_tag
from . import baselines as baseline_codecs
from .records import RecordLog
from .tasks import Task

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}
UGICM = "ugicm"
ORIGINAL = "original"  # task scores on the uncompressed images: the ceiling for every codec


@dataclass(frozen=True)
class Preference:
    label: str  # curve suffix: "human", "machine", "p0.5"
    beta: float


def ugicm_coder(model: str, weights_sha256: str, refine_steps: int = 0) -> str:
    """The coder of ugicm records: the model, its weights' digest and the encoder's refinement
    steps, if any (scripts read it back)."""
    coder = f"{model}:{weights_sha256[:16]}"
    return f"{coder} refine={refine_steps}" if refine_steps else coder


def parse_preferences(text: str) -> list[Preference]:
    """'human,machine,0.5' -> preferences (names or numbers in [0, 1]), duplicates dropped."""
    out: list[Preference] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        beta = parse_preference(item)
        if beta not in [p.beta for p in out]:
            out.append(Preference(preference_tag(beta), beta))
    return out


def find_images(folder: Path, limit: int | None = None) -> list[Path]:
    """The images directly in ``folder``, or in its ``images/`` subfolder (a dataset root laid out
    as images/ beside labels/ and masks/)."""
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images and (folder / "images").is_dir():
        return find_images(folder / "images", limit)
    return images[:limit] if limit else images


def is_kodak(images: list[Path]) -> bool:
    """Kodak is recognised by its file names, kodim01 … kodim24."""
    return bool(images) and all(re.fullmatch(r"kodim(0[1-9]|1\d|2[0-4])", p.stem.lower()) for p in images)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class EvalPlan:
    folder: Path
    out: Path
    images: list[Path]
    qualities: list[float]
    preferences: list[Preference]
    baselines: list[str]
    baseline_qualities: list[int] | None = None  # one ladder for every baseline instead of its own
    tasks: list[Task] = field(default_factory=list)
    model: dict | None = None  # {"name", "sha256", "path"} of the weights in use
    device: str = "auto"
    threads: int | None = None
    jobs: int = 1
    save_bitstreams: bool = False
    anchors_dir: Path | None = None
    image_digests: dict[str, str] = field(default_factory=dict)
    refine_steps: int = 0  # latent refinement steps of the ugicm encoder (refinement.py)

    def coder(self, codec: str) -> str:
        """What made a record: part of its key, so other weights or encoders are measured anew."""
        if codec == UGICM:
            return ugicm_coder(self.model["name"], self.model["sha256"], self.refine_steps)
        if codec == ORIGINAL:
            return "-"
        b = baseline_codecs.get(codec)
        return f"{b.library()} {json.dumps(b.options, sort_keys=True)}"

    def ladder(self, baseline: str) -> list[int]:
        return list(self.baseline_qualities or baseline_codecs.get(baseline).qualities)

    def curves(self, codec: str) -> list[str]:
        if codec == UGICM:
            return [f"{UGICM}/{p.label}" for p in self.preferences]
        return [codec]

    def all_curves(self) -> list[str]:
        names = self.curves(UGICM) if self.qualities else []
        return names + list(self.baselines)


@dataclass(frozen=True)
class Unit:
    image: str
    codec: str
    quality: float | None

    @property
    def setting(self) -> str:
        return "-" if self.quality is None else f"q{self.quality:g}"

    def describe(self) -> str:
        return f"{self.image} {self.codec} {self.setting}"


def plan_units(plan: EvalPlan) -> list[Unit]:
    units = []
    for image in plan.images:
        if plan.tasks:
            units.append(Unit(image.name, ORIGINAL, None))
        units += [Unit(image.name, UGICM, q) for q in plan.qualities]
        for name in plan.baselines:
            units += [Unit(image.name, name, q) for q in plan.ladder(name)]
    return units


def is_done(unit: Unit, plan: EvalPlan, records: dict) -> bool:
    wanted_tasks = {t.name for t in plan.tasks}
    for curve in plan.curves(unit.codec):
        key = (unit.image, plan.image_digests[unit.image], curve, unit.setting, plan.coder(unit.codec))
        record = records.get(key)
        if record is None or not wanted_tasks <= set(record.get("tasks", {})):
            return False
    return True


# --------------------------------------------------------------------------------- worker
class Worker:
    """Measures units; one per process. The model and task runtimes load on first use."""

    def __init__(self, plan: EvalPlan):
        import torch

        self.plan = plan
        threads = plan.threads or (1 if plan.jobs > 1 else None)
        if threads:
            torch.set_num_threads(threads)
        self._codec = None

    def codec(self):
        if self._codec is None:
            from ..codec import Codec

            self._codec = Codec(
                weights=self.plan.model["path"], device=self.plan.device, threads=self.plan.threads
            )
        return self._codec

    def run(self, unit: Unit) -> list[dict]:
        from .images import load_rgb

        path = self.plan.folder / unit.image
        original = load_rgb(path.read_bytes())
        base = {
            "image": unit.image,
            "image_sha256": self.plan.image_digests[unit.image],
            "setting": unit.setting,
            "quality": unit.quality,
            "coder": self.plan.coder(unit.codec),
            "width": int(original.shape[1]),
            "height": int(original.shape[0]),
        }
        if unit.codec == ORIGINAL:
            return [{**base, "curve": ORIGINAL, "tasks": self._tasks(path, original)}]
        if unit.codec == UGICM:
            return self._run_ugicm(unit, original, base)
        return self._run_baseline(unit, original, base)

    def _run_ugicm(self, unit, original, base) -> list[dict]:
        codec = self.codec()
        # Every codec gets the same pixels and no metadata (ICC, EXIF), so sizes compare like for like.
        encoded = codec.encode_detailed(original, quality=unit.quality, refine_steps=self.plan.refine_steps)
        self._save(unit, encoded.data, ".ugc")
        parsed = codec.parse(encoded.data)
        records = []
        for pref in self.plan.preferences:
            start = time.perf_counter()
            decoded, _ = codec.decode_array(parsed, pref.beta)
            decode_s = time.perf_counter() - start
            records.append(
                self._measure(
                    {
                        **base,
                        "curve": f"{UGICM}/{pref.label}",
                        "prefer": pref.beta,
                        "rate_level": encoded.level,
                    },
                    original,
                    decoded,
                    len(encoded.data),
                    encoded.seconds,
                    decode_s,
                )
            )
        return records

    def _run_baseline(self, unit, original, base) -> list[dict]:
        codec = baseline_codecs.get(unit.codec)
        start = time.perf_counter()
        data = codec.encode(original, int(unit.quality))
        encode_s = time.perf_counter() - start
        self._save(unit, data, codec.suffix)
        start = time.perf_counter()
        decoded = codec.decode(data)
        decode_s = time.perf_counter() - start
        return [
            self._measure({**base, "curve": unit.codec}, original, decoded, len(data), encode_s, decode_s)
        ]

    def _measure(self, record, original, decoded, size, encode_s, decode_s) -> dict:
        from .metrics import ms_ssim, psnr

        path = self.plan.folder / record["image"]
        return {
            **record,
            "bytes": size,
            "bpp": size * 8 / (original.shape[0] * original.shape[1]),
            "psnr": psnr(original, decoded),
            "ms_ssim": ms_ssim(original, decoded),
            "encode_s": round(encode_s, 4),
            "decode_s": round(decode_s, 4),
            "tasks": self._tasks(path, decoded),
        }

    def _tasks(self, path: Path, rgb: np.ndarray) -> dict:
        return {task.name: task.measure(path, rgb) for task in self.plan.tasks}

    def _save(self, unit: Unit, data: bytes, suffix: str) -> None:
        """Keeps the encoded file (``--save-bitstreams``), e.g. to check sizes or decode it again."""
        if not self.plan.save_bitstreams:
            return
        target = bitstream_path(self.plan.out, unit.codec, unit.setting, unit.image, suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)


def bitstream_path(out: Path, codec: str, setting: str, image: str, suffix: str) -> Path:
    return out / "bitstreams" / codec / setting / (Path(image).stem + suffix)


# ------------------------------------------------------------------------------ execution
class FatalError(Exception):
    """Stops the whole run (weights missing or altered): no later unit could succeed."""


def _attempt(worker: Worker, unit: Unit) -> tuple[str, object]:
    """('ok', records), ('error', one-line message) or ('fatal', message): returned, not raised,
    so that pool workers and the in-process worker report alike."""
    try:
        return "ok", worker.run(unit)
    except WeightsError as e:
        return "fatal", str(e)
    except UgicmError as e:
        return "error", str(e)
    except MemoryError:
        return "error", "out of memory"
    except Exception as e:  # one bad image never stops the run; UGICM_DEBUG=1 shows the traceback
        if os.environ.get("UGICM_DEBUG"):
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        return "error", f"unexpected {type(e).__name__}: {first}"


_POOL_WORKER: Worker | None = None


def _pool_init(plan, worker_class) -> None:
    global _POOL_WORKER
    _POOL_WORKER = worker_class(plan)


def _pool_attempt(unit: Unit) -> tuple[str, object]:
    return _attempt(_POOL_WORKER, unit)


def execute(
    plan: EvalPlan,
    log: RecordLog,
    units: list[Unit],
    done: Callable[[Unit, list[dict]], None],
    failed: Callable[[Unit, str], None],
    worker_class=Worker,
) -> None:
    """Runs ``units``, appending their records to ``log``; calls ``done``/``failed`` per unit.
    ``worker_class(plan)`` measures them (``restoration.Worker`` for a restore run), in this
    process or in ``plan.jobs`` spawned ones; a WeightsError stops everything (FatalError)."""

    def handle(unit, status, payload):
        if status == "fatal":
            raise FatalError(payload)
        if status == "error":
            failed(unit, payload)
            return
        for record in payload:
            log.append(record)
        done(unit, payload)

    if plan.jobs <= 1 or len(units) <= 1:
        worker = worker_class(plan)
        for unit in units:
            handle(unit, *_attempt(worker, unit))
        return

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: forking a process that has started torch's thread pools can deadlock.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=plan.jobs, mp_context=context, initializer=_pool_init, initargs=(plan, worker_class)
    )
    try:
        futures = {pool.submit(_pool_attempt, unit): unit for unit in units}
        for future in as_completed(futures):
            handle(futures[future], *future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
