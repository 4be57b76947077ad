"""``ugicm eval --tasks restore``: how well the restore decode recovers clean images from degraded
ones, against classic codecs followed by classic restoration.

For every clean image and every degradation (``degradations.py``, seeded per image so that every
run degrades every image identically), the DEGRADED image is what gets coded; every decode is
scored against the CLEAN image:

- ``ugicm/human``, ``ugicm/restore``: one .ugc file per quality, decoded both ways.
- ``webp``, ``avif`` (each baseline named): the degraded image coded and decoded, nothing more.
- ``webp+restoration``, ``avif+restoration``: that decode restored classically: BM3D for noise
  (σ estimated blindly from the decoded image, since coding already removed part of the noise),
  Richardson–Lucy deconvolution with the TRUE point spread function for blur (an oracle the codec
  does not have), plus the known exposure gain for low light; JPEG artefacts get no restoration.
- ``webp/clean`` (the first baseline): the clean image itself coded: the ceiling.
- ``input``: the degraded image uncoded (bpp none): what the degradation alone costs.

Records go to ``records.jsonl`` (``records.py``: resumable, one writer at a time) with the
degradation and seed in their key; ``results.json``, ``results.md`` and one rate-PSNR plot per
degradation summarise them, with BD-rates of ``ugicm/restore`` against every other curve.

With the ``brisque`` package installed (its SVM model ships in its wheel: nothing is downloaded)
each record also carries the BRISQUE score of the decoded image, a no-reference measure (lower
is better).

Importing this module imports numpy only; torch, bm3d, scikit-image and matplotlib load when
work starts.
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib.util
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..degradations import Degradation, disk_kernel, image_rng, motion_kernel, parse_degradation
from . import baselines as baseline_codecs

TASK = "restore"
UGICM = "ugicm"
HUMAN, RESTORE = "ugicm/human", "ugicm/restore"
INPUT = "input"  # the degraded image, uncoded
CLEAN = Degradation("clean", 0.0)
RESTORED_SUFFIX = "+restoration"
CLEAN_SUFFIX = "/clean"

NOISE_KINDS = ("noise", "poisson", "lowlight")
BLUR_KINDS = ("defocus", "motion")
# Trimmed ladders: on Kodak these run from about 0.05 bpp to 2-4 bpp on noisy images (noise costs
# bits), 0.4-1 bpp on blurred ones. Other baselines use their own ladder (baselines.py).
LADDERS = {"webp": (0, 10, 25, 45, 65, 80), "avif": (0, 15, 30, 45, 60, 75)}
DEFAULT_BASELINES = "webp,avif"

# The classic restoration, fixed so that records stay comparable (its text is in their coder).
# BM3D's low-complexity profile, hard-thresholding stage only: on a Kodak image decoded from WebP
# it was the fastest (~7 s, one core) and at least as good as both stages of the normal profile,
# whose Wiener stage assumes white noise that coding no longer leaves.
BM3D_PROFILE, BM3D_STAGE = "lc", "hard-thresholding"
RL_ITERATIONS = 30  # Richardson–Lucy; beat unsupervised Wiener on 3 of 4 WebP decodes of kodim01


# ------------------------------------------------------------------------------------ plan
@dataclass
class RestorePlan:
    folder: Path
    out: Path
    images: list[Path]
    degradations: list[Degradation]
    qualities: list[float]
    baselines: list[str]
    ladders: dict[str, list[int]]
    model: dict | None = None  # {"name", "sha256", "path", "restore_sha256"}
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    jobs: int = 1
    refine_steps: int = 0
    save_bitstreams: bool = False
    image_digests: dict[str, str] = field(default_factory=dict)
    nr: str | None = None  # "brisque" when the package is there

    @property
    def ceiling(self) -> str | None:
        """The baseline that also codes the clean images: the first one named."""
        return self.baselines[0] if self.baselines else None

    def coder(self, curve: str, degradation: Degradation) -> str:
        """What made a record (part of its key): weights and add-on, library and options, the
        restoration method."""
        from .runner import ugicm_coder

        if curve == INPUT:
            return "-"
        if curve in (HUMAN, RESTORE):
            coder = ugicm_coder(self.model["name"], self.model["sha256"], self.refine_steps)
            return coder + (f" restore={self.model['restore_sha256'][:16]}" if curve == RESTORE else "")
        name = curve.split("+")[0].split("/")[0]
        b = baseline_codecs.get(name)
        coder = f"{b.library()} {json.dumps(b.options, sort_keys=True)}"
        if curve.endswith(RESTORED_SUFFIX):
            coder += " + " + restoration_method(degradation)
        return coder


@dataclass(frozen=True)
class Unit:
    image: str
    degradation: str  # the spec, e.g. "noise:15", or "clean" for the ceiling
    codec: str  # "ugicm", a baseline name, "input", or "<baseline>/clean"
    quality: float | None

    @property
    def setting(self) -> str:
        return "-" if self.quality is None else f"q{self.quality:g}"

    def describe(self) -> str:
        return f"{self.image} {self.degradation} {self.codec} {self.setting}"


def degradation_of(spec: str) -> Degradation:
    return CLEAN if spec == "clean" else parse_degradation(spec)


def spec_of(d: Degradation) -> str:
    return "clean" if d.kind == "clean" else f"{d.kind}:{d.level:g}"


def parse_degradations(text: str) -> list[Degradation]:
    """'noise:15,defocus:3' -> degradations (ValueError naming the bad one), duplicates dropped.
    'clean:0' is allowed: what the restore decode does to a photo that needs no restoring."""
    out: list[Degradation] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        try:
            d = parse_degradation(item)
        except ValueError as e:
            raise ValueError(f"{item!r}: {e}") from None
        if d not in out:
            out.append(d)
    if not out:
        raise ValueError("give at least one degradation, e.g. noise:15")
    return out


def curves_of(unit_codec: str, d: Degradation) -> list[str]:
    """The curves one unit writes a record for."""
    if unit_codec == UGICM:
        return [HUMAN, RESTORE]
    if unit_codec == INPUT or unit_codec.endswith(CLEAN_SUFFIX):
        return [unit_codec]
    return [unit_codec] + ([unit_codec + RESTORED_SUFFIX] if restoration_method(d) != "none" else [])


def plan_units(plan: RestorePlan) -> list[Unit]:
    units = []
    for image in plan.images:
        for d in plan.degradations:
            spec = spec_of(d)
            units.append(Unit(image.name, spec, INPUT, None))
            units += [Unit(image.name, spec, UGICM, q) for q in plan.qualities]
            for name in plan.baselines:
                units += [Unit(image.name, spec, name, q) for q in plan.ladders[name]]
        if plan.ceiling:
            units += [
                Unit(image.name, "clean", plan.ceiling + CLEAN_SUFFIX, q) for q in plan.ladders[plan.ceiling]
            ]
        if plan.nr:
            units.append(Unit(image.name, "clean", INPUT, None))  # the clean originals' NR score
    return units


def key(plan: RestorePlan, image: str, d: Degradation, curve: str, setting: str) -> tuple:
    """A record's key (records.record_key) for a run's unit."""
    return (image, plan.image_digests[image], curve, setting, plan.coder(curve, d), d.label, plan.seed)


def is_done(unit: Unit, plan: RestorePlan, records: dict) -> bool:
    d = degradation_of(unit.degradation)
    for curve in curves_of(unit.codec, d):
        record = records.get(key(plan, unit.image, d, curve, unit.setting))
        if record is None or (plan.nr and record.get(plan.nr) is None and "nr_error" not in record):
            return False
    return True


# ---------------------------------------------------------------------- classic restoration
def restoration_method(d: Degradation) -> str:
    """The classic restoration a baseline's decode of an image degraded by ``d`` gets, as text
    (library versions included): what records' coders and results.md name."""
    if d.kind in NOISE_KINDS:
        text = (
            f"BM3D (bm3d {_version('bm3d')}, profile {BM3D_PROFILE}, {BM3D_STAGE} stage, σ estimated "
            f"blindly by scikit-image {_version('scikit-image')} estimate_sigma)"
        )
        return text + (", then the true exposure gain undone" if d.kind == "lowlight" else "")
    if d.kind in BLUR_KINDS:
        return (
            f"Richardson–Lucy deconvolution ({RL_ITERATIONS} iterations, scikit-image "
            f"{_version('scikit-image')}) with the true PSF"
        )
    return "none"


@functools.lru_cache(maxsize=None)
def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def missing_libraries(degradations: list[Degradation], baselines: list[str]) -> list[str]:
    """The packages the classic restorations of this run need but cannot import."""
    if not baselines:
        return []
    kinds = {d.kind for d in degradations}
    need = []
    if kinds & set(NOISE_KINDS):
        need += [("bm3d", "bm3d"), ("scikit-image", "skimage")]
    if kinds & set(BLUR_KINDS):
        need += [("scikit-image", "skimage")]
    return list(dict.fromkeys(p for p, module in need if importlib.util.find_spec(module) is None))


def true_psf(d: Degradation, seed: int, image: str) -> np.ndarray:
    """The point spread function ``d.apply`` blurred ``image`` with: a motion streak's angle is
    the first draw of the image's generator (``degradations.Degradation.apply``)."""
    if d.kind == "defocus":
        return disk_kernel(d.level)
    if d.kind == "motion":
        return motion_kernel(d.level, image_rng(seed, image, d).uniform(0.0, math.pi))
    raise ValueError(f"{d.kind} is not a blur")


def classic_restore(
    decoded: np.ndarray, d: Degradation, psf: np.ndarray | None = None
) -> tuple[np.ndarray, dict]:
    """(the restored HxWx3 uint8 image, facts for the record) for a decode of an image degraded
    by ``d``; ``psf``: the blur's true PSF (``true_psf``)."""
    x = decoded.astype(np.float64) / 255.0
    facts: dict = {}
    if d.kind in NOISE_KINDS:
        from skimage.restoration import estimate_sigma

        sigma = float(estimate_sigma(x, channel_axis=-1, average_sigmas=True))
        facts["sigma_estimate"] = round(255.0 * sigma, 3)
        if sigma > 0.25 / 255.0:  # below a quarter level there is nothing left to remove
            x = bm3d_rgb(x, sigma)
        if d.kind == "lowlight":  # the exposure: linear light was scaled by d.level
            x = np.clip(np.clip(x, 0.0, 1.0) ** 2.2 / d.level, 0.0, 1.0) ** (1 / 2.2)
    elif d.kind in BLUR_KINDS:
        x = richardson_lucy_rgb(x, psf)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8), facts


def bm3d_rgb(x: np.ndarray, sigma: float) -> np.ndarray:
    """BM3D of an RGB image in [0, 1] with white-noise σ (same scale): ``bm3d.bm3d_rgb``'s colour
    handling (the opponent colour transform), with the profile and stage of ``BM3D_PROFILE`` and
    ``BM3D_STAGE``, which ``bm3d_rgb`` does not let one choose."""
    import bm3d
    from bm3d.profiles import BM3DProfileLC

    z, imax, imin, scale, _ = bm3d.rgb_to(x, "opp")
    sigmas = sigma * np.transpose(np.atleast_3d(np.sqrt(scale)), (0, 2, 1))
    y = bm3d.bm3d(z, sigmas, BM3DProfileLC(), stage_arg=bm3d.BM3DStages.HARD_THRESHOLDING)
    return bm3d.rgb_to(y, "opp", True, imax, imin)[0]


def richardson_lucy_rgb(x: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """Richardson–Lucy per channel of an RGB image in [0, 1], with reflected borders (as the blur
    was made) so that the FFT's wrap-around leaves no ringing frame."""
    from skimage.restoration import richardson_lucy

    pad = max(psf.shape) + 8
    padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    out = np.stack(
        [richardson_lucy(padded[..., c], psf, num_iter=RL_ITERATIONS, clip=False) for c in range(3)], axis=-1
    )
    return out[pad:-pad, pad:-pad]


# ---------------------------------------------------------------------- no-reference measure
def nr_measure() -> str | None:
    """'brisque' when the brisque package (and OpenCV, which it needs) can be imported."""
    if importlib.util.find_spec("brisque") is None or importlib.util.find_spec("cv2") is None:
        return None
    return "brisque"


_BRISQUE = None


def brisque_score(rgb: np.ndarray) -> float:
    """BRISQUE (Mittal et al. 2012) of a uint8 RGB image: the ``brisque`` package with the SVM
    model in its wheel; lower is better."""
    global _BRISQUE
    if _BRISQUE is None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from brisque import BRISQUE

            _BRISQUE = BRISQUE(url=False)
    with np.errstate(all="ignore"):
        return float(_BRISQUE.score(rgb))


def nr_library() -> str:
    return f"brisque {_version('brisque')} (libsvm-official {_version('libsvm-official')})"


# ---------------------------------------------------------------------------------- worker
class Worker:
    """Measures units; one per process. The model loads on first use."""

    def __init__(self, plan: RestorePlan):
        self.plan = plan
        self._codec = None

    def codec(self):
        if self._codec is None:
            import torch

            from ..codec import Codec

            threads = self.plan.threads or (1 if self.plan.jobs > 1 else None)
            if threads:
                torch.set_num_threads(threads)
            self._codec = Codec(
                weights=self.plan.model["path"], device=self.plan.device, threads=self.plan.threads
            )
        return self._codec

    def run(self, unit: Unit) -> list[dict]:
        from .images import load_rgb

        clean = load_rgb((self.plan.folder / unit.image).read_bytes())
        d = degradation_of(unit.degradation)
        degraded = d.apply(clean, image_rng(self.plan.seed, unit.image, d))
        base = {
            "image": unit.image,
            "image_sha256": self.plan.image_digests[unit.image],
            "degradation": d.label,
            "seed": self.plan.seed,
            "setting": unit.setting,
            "quality": unit.quality,
            "width": int(clean.shape[1]),
            "height": int(clean.shape[0]),
        }
        if unit.codec == INPUT:
            return [self._measure(base, INPUT, d, clean, degraded, None)]
        if unit.codec == UGICM:
            return self._ugicm(unit, d, clean, degraded, base)
        if unit.codec.endswith(CLEAN_SUFFIX):
            name = unit.codec[: -len(CLEAN_SUFFIX)]
            b = baseline_codecs.get(name)
            data = b.encode(clean, int(unit.quality))
            self._save(unit, data, b.suffix)
            return [self._measure(base, unit.codec, d, clean, b.decode(data), len(data))]
        return self._baseline(unit, d, clean, degraded, base)

    def _ugicm(self, unit, d, clean, degraded, base) -> list[dict]:
        codec = self.codec()
        encoded = codec.encode_detailed(degraded, quality=unit.quality, refine_steps=self.plan.refine_steps)
        self._save(unit, encoded.data, ".ugc")
        parsed = codec.parse(encoded.data)
        records = []
        for curve, prefer in ((HUMAN, "human"), (RESTORE, "restore")):
            start = time.perf_counter()
            decoded, _ = codec.decode_array(parsed, prefer)
            extra = {"rate_level": encoded.level, "decode_s": round(time.perf_counter() - start, 4)}
            records.append(self._measure({**base, **extra}, curve, d, clean, decoded, len(encoded.data)))
        return records

    def _baseline(self, unit, d, clean, degraded, base) -> list[dict]:
        b = baseline_codecs.get(unit.codec)
        data = b.encode(degraded, int(unit.quality))
        self._save(unit, data, b.suffix)
        decoded = b.decode(data)
        records = [self._measure(base, unit.codec, d, clean, decoded, len(data))]
        if restoration_method(d) != "none":
            psf = true_psf(d, self.plan.seed, unit.image) if d.kind in BLUR_KINDS else None
            start = time.perf_counter()
            restored, facts = classic_restore(decoded, d, psf)
            facts["restore_s"] = round(time.perf_counter() - start, 3)
            curve = unit.codec + RESTORED_SUFFIX
            records.append(self._measure({**base, **facts}, curve, d, clean, restored, len(data)))
        return records

    def _measure(self, base: dict, curve: str, d: Degradation, clean, decoded, size: int | None) -> dict:
        from .metrics import ms_ssim, psnr

        record = {
            **base,
            "curve": curve,
            "coder": self.plan.coder(curve, d),
            "bytes": size,
            "bpp": None if size is None else size * 8 / (clean.shape[0] * clean.shape[1]),
            "psnr": psnr(clean, decoded),
            "ms_ssim": ms_ssim(clean, decoded),
        }
        if self.plan.nr:
            try:
                record[self.plan.nr] = brisque_score(decoded)
            except Exception as e:  # e.g. an image too small for its features: the record stays
                record[self.plan.nr] = None
                record["nr_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return record

    def _save(self, unit: Unit, data: bytes, suffix: str) -> None:
        if not self.plan.save_bitstreams:
            return
        label = degradation_of(unit.degradation).label
        target = self.plan.out / "bitstreams" / label / unit.codec.replace("/", "-") / unit.setting
        target = target / (Path(unit.image).stem + suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)


# --------------------------------------------------------------------------------- summary
def curve_order(plan: RestorePlan) -> list[str]:
    curves = [RESTORE, HUMAN] if plan.qualities else []
    for name in plan.baselines:
        curves += [name + RESTORED_SUFFIX, name]
    if plan.ceiling:
        curves.append(plan.ceiling + CLEAN_SUFFIX)
    return curves


def _average(found: list[dict], nr: str | None) -> dict:
    from .metrics import ms_ssim_db

    point = {"setting": found[0]["setting"], "quality": found[0]["quality"], "n_images": len(found)}
    for name in ("bpp", "psnr", "ms_ssim", nr, "restore_s", "sigma_estimate"):
        if not name:
            continue
        values = [r.get(name) for r in found]
        if name in ("restore_s", "sigma_estimate") and all(v is None for v in values):
            continue
        point[name] = None if any(v is None for v in values) else float(np.mean(values))
    point["ms_ssim_db"] = ms_ssim_db(point["ms_ssim"])
    return point


def build_results(plan: RestorePlan, records: dict) -> dict:
    from .bd import METHODS
    from .summary import QUALITY_AXES, _compare

    n = len(plan.images)
    per_degradation = {}
    incomplete = []

    def points(curve: str, d: Degradation, settings: list[str]) -> list[dict]:
        out = []
        for setting in settings:
            found = [records.get(key(plan, im.name, d, curve, setting)) for im in plan.images]
            found = [r for r in found if r is not None]
            if found:
                out.append(_average(found, plan.nr))
                if len(found) < n:
                    incomplete.append(f"{d.label} {curve} {setting}: {len(found)} of {n} images")
        return sorted(out, key=lambda p: (p["bpp"] is None, p["bpp"] or 0.0))

    ugicm_settings = [f"q{q:g}" for q in plan.qualities]
    ceiling = (
        points(plan.ceiling + CLEAN_SUFFIX, CLEAN, [f"q{q:g}" for q in plan.ladders[plan.ceiling]])
        if plan.ceiling
        else []
    )
    originals = points(INPUT, CLEAN, ["-"]) if plan.nr else []
    for d in plan.degradations:
        curves: dict[str, list[dict]] = {}
        for curve in curve_order(plan):
            if curve in (HUMAN, RESTORE):
                curves[curve] = points(curve, d, ugicm_settings)
            elif curve.endswith(CLEAN_SUFFIX):
                curves[curve] = ceiling
            else:
                name = curve.split("+")[0]
                if curve.endswith(RESTORED_SUFFIX) and restoration_method(d) == "none":
                    continue
                curves[curve] = points(curve, d, [f"q{q:g}" for q in plan.ladders[name]])
        curves = {c: pts for c, pts in curves.items() if pts}
        uncoded = points(INPUT, d, ["-"])
        bd = []
        if RESTORE in curves:
            for metric in QUALITY_AXES:
                for ref, ref_points in curves.items():
                    if ref == RESTORE:
                        continue
                    ref_points = [p for p in ref_points if p["n_images"] == n]
                    for method in METHODS:
                        bd.append(
                            _compare(RESTORE, curves[RESTORE], ref, "measured", ref_points, metric, method, n)
                        )
        per_degradation[d.label] = {
            "spec": spec_of(d),
            "restoration": restoration_method(d),
            "input": uncoded[0] if uncoded else None,
            "curves": curves,
            "bd": bd,
        }
    return {
        "kind": TASK,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "folder": str(plan.folder),
        "images": [p.name for p in plan.images],
        "seed": plan.seed,
        "ugicm": None
        if not plan.qualities
        else {
            "model": plan.model["name"],
            "weights_sha256": plan.model["sha256"],
            "restore_sha256": plan.model["restore_sha256"],
            "qualities": plan.qualities,
            "refine_steps": plan.refine_steps,
        },
        "baselines": {
            name: {
                "library": baseline_codecs.get(name).library(),
                "options": baseline_codecs.get(name).options,
                "qualities": plan.ladders[name],
            }
            for name in plan.baselines
        },
        "ceiling": plan.ceiling + CLEAN_SUFFIX if plan.ceiling else None,
        "nr_measure": None
        if not plan.nr
        else {"name": "BRISQUE", "key": plan.nr, "library": nr_library(), "lower_is_better": True},
        "originals": originals[0] if originals else None,
        "degradations": per_degradation,
        "incomplete": incomplete,
    }


def _num(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _table(cells: list[str]) -> list[str]:
    return ["| " + " | ".join(cells) + " |", "|" + "|".join("---" for _ in cells) + "|"]


def describe_curves(results: dict) -> list[str]:
    """What each curve is: for results.md and the report."""
    lines = []
    u = results.get("ugicm")
    if u:
        lines.append(
            f"- `ugicm/restore`, `ugicm/human`: the two decodes of one .ugc file of the degraded image; "
            f"model `{u['model']}` (weights sha256 `{u['weights_sha256'][:16]}…`, restore add-on "
            f"`{u['restore_sha256'][:16]}…`), qualities {', '.join(f'{q:g}' for q in u['qualities'])}"
            + (f", encoded with {u['refine_steps']} latent refinement steps" if u.get("refine_steps") else "")
        )
    for name, b in results["baselines"].items():
        lines.append(
            f"- `{name}`: the degraded image coded by {b['library']}, options {json.dumps(b['options'])}, "
            f"qualities {', '.join(map(str, b['qualities']))}; `{name}{RESTORED_SUFFIX}`: that decode "
            "restored classically (below)"
        )
    if results.get("ceiling"):
        lines.append(f"- `{results['ceiling']}`: the CLEAN image coded at the same ladder: the ceiling")
    lines.append("- restoration of the baselines' decodes:")
    for label, entry in results["degradations"].items():
        lines.append(f"  - {label}: {entry['restoration']}")
    methods = [e["restoration"] for e in results["degradations"].values()]
    if any(m.endswith("true PSF") for m in methods):
        lines.append(
            "- The deconvolution is given the TRUE point spread function of the blur: an oracle "
            "the codec does not have (it must infer the blur from the image)."
        )
    if any("true exposure gain" in m for m in methods):
        lines.append("- The low-light restoration is given the TRUE exposure gain: an oracle too.")
    nr = results.get("nr_measure")
    if nr:
        lines.append(
            f"- {nr['name']}: no-reference quality of each decode, {nr['library']}; lower is better. It "
            "rewards sharpness: a deconvolution's overshoot can score better than the clean image"
        )
    return lines


def markdown(results: dict, bd_method: str = "cubic") -> str:
    n = len(results["images"])
    nr = results.get("nr_measure")
    lines = [
        "# ugicm restore evaluation",
        "",
        f"- images: {n} from `{results['folder']}`, each degraded reproducibly (seed {results['seed']})",
        f"- made: {results['created']}",
        "- every decode is scored against the CLEAN image: bpp from the size of each encoded file "
        "(headers included), PSNR over RGB, MS-SSIM at data range 255 (in dB as -10·log10(1 - MS-SSIM))",
        *describe_curves(results),
    ]
    if results.get("originals") and nr:
        lines.append(f"- {nr['name']} of the clean images: {_num(results['originals'].get(nr['key']), 2)}")
    if results["incomplete"]:
        lines += [
            "",
            "**Incomplete points** (left out of the BD tables): " + "; ".join(results["incomplete"]),
        ]
    notes: dict[str, int] = {}
    for label, entry in results["degradations"].items():
        lines += ["", f"## {label}", ""]
        uncoded = entry.get("input")
        if uncoded:
            lines.append(
                f"The degraded images themselves (uncoded): PSNR {_num(uncoded['psnr'], 2)} dB, MS-SSIM "
                f"{_num(uncoded['ms_ssim'], 4)}"
                + (f", {nr['name']} {_num(uncoded.get(nr['key']), 2)}" if nr else "")
                + "."
            )
            lines.append("")
        header = ["curve", "setting", "bpp", "PSNR (dB)", "MS-SSIM", "MS-SSIM (dB)"]
        header += [nr["name"]] if nr else []
        lines += _table(header)
        for curve, points in entry["curves"].items():
            for p in points:
                cells = [
                    curve,
                    p["setting"],
                    _num(p["bpp"], 4),
                    _num(p["psnr"], 2),
                    _num(p["ms_ssim"], 4),
                    _num(p["ms_ssim_db"], 2),
                ]
                cells += [_num(p.get(nr["key"]), 2)] if nr else []
                lines.append("| " + " | ".join(cells) + " |")
        rows = [r for r in entry["bd"] if r["method"] == bd_method]
        if rows:
            lines += [
                "",
                f"BD of `ugicm/restore` against each curve ({bd_method}): negative BD-rate = fewer bits "
                "for the same quality, positive BD-PSNR = better at the same rate.",
                "",
            ]
            lines += _table(["reference", "BD-rate (PSNR)", "BD-PSNR", "BD-rate (MS-SSIM)", "BD-MS-SSIM"])
            for ref in dict.fromkeys(r["reference"] for r in rows):
                by_metric = {r["metric"]: r for r in rows if r["reference"] == ref}
                cells = [ref]
                for metric, unit in (("psnr", "dB"), ("ms_ssim_db", "dB")):
                    r = by_metric.get(metric)
                    for value_key, fmt in (
                        ("bd_rate_percent", "{:+.1f} %"),
                        ("bd_quality_db", "{:+.2f} " + unit),
                    ):
                        if r is None or r[value_key] is None:
                            i = notes.setdefault((r or {}).get("error") or "not computed", len(notes) + 1)
                            cells.append(f"n/a [{i}]")
                        else:
                            cells.append(fmt.format(r[value_key]))
                lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"Plot: `rate_psnr_{label}.png`."]
    if notes:
        lines += ["", "Why cells are empty:", ""]
        lines += [f"- [{i}] {text}" for text, i in notes.items()]
    lines += ["", "Every number: `results.json`; per-image records: `records.jsonl`.", ""]
    return "\n".join(lines)


def plot(results: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    colours = plt.get_cmap("tab10")
    for label, entry in results["degradations"].items():
        measured = {
            c: [(p["bpp"], p["psnr"]) for p in pts if p.get("bpp") and p.get("psnr") is not None]
            for c, pts in entry["curves"].items()
        }
        measured = {c: xy for c, xy in measured.items() if xy}
        if not measured:
            continue
        fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
        for i, (curve, xy) in enumerate(measured.items()):
            style = (
                "--"
                if curve.endswith(CLEAN_SUFFIX)
                else (":" if "+" not in curve and "/" not in curve else "-")
            )
            ax.plot(
                *zip(*sorted(xy)),
                marker="o",
                markersize=3.5,
                linewidth=2.2 if curve == RESTORE else 1.5,
                linestyle=style,
                color=colours(i % 10),
                label=curve,
            )
        if entry.get("input"):
            ax.axhline(
                entry["input"]["psnr"],
                color="black",
                linewidth=0.8,
                linestyle=":",
                label="degraded input, uncoded",
            )
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel("PSNR against the clean image (dB)")
        ax.set_title(f"{label}: rate vs PSNR, {len(results['images'])} images")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        fig.tight_layout()
        path = out / f"rate_psnr_{label}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def write_results(plan: RestorePlan, records: dict, bd_method: str = "cubic") -> dict:
    from .summary import _atomic_text

    results = build_results(plan, records)
    _atomic_text(plan.out / "results.json", json.dumps(results, indent=1) + "\n")
    _atomic_text(plan.out / "results.md", markdown(results, bd_method))
    plot(results, plan.out)
    return results


# ------------------------------------------------------------------------------ the report
def report_rows(results: dict) -> list[str]:
    """docs/results.md's section of a restore run (``ugicm eval report``): what each curve is, the
    BD-rates of ugicm/restore against every other curve per degradation, and the restore decode's
    PSNR gain over the human decode of the same files."""
    lines = [
        f"- images: {len(results['images'])} from `{results['folder']}`, degraded with seed {results['seed']}; "
        f"measured {results['created']}",
        *describe_curves(results),
        "",
    ]
    degradations = results["degradations"]
    references = list(dict.fromkeys(r["reference"] for e in degradations.values() for r in e["bd"]))
    tables = (
        (
            "psnr",
            "bd_quality_db",
            "BD-PSNR (dB) of `ugicm/restore`, the PSNR gained at equal rate,",
            "{:+.2f}",
        ),
        ("psnr", "bd_rate_percent", "BD-rate of `ugicm/restore` at equal PSNR", "{:+.1f} %"),
        ("ms_ssim_db", "bd_rate_percent", "BD-rate of `ugicm/restore` at equal MS-SSIM", "{:+.1f} %"),
    )
    if references:
        lines += [
            "Where noise is coded, a curve's PSNR can fall as its rate grows (the bits go to the noise):",
            "BD-rate is then ill-posed and BD-PSNR, the mean PSNR gap over the shared rates, the safer summary.",
            "",
        ]
    for metric, key_name, title, number in tables:
        if not references:
            break
        lines += [f"{title} against each curve (cubic; n/a: no overlap):", ""]
        lines += _table(["degradation", "uncoded input PSNR (dB)"] + [f"vs {r}" for r in references])
        for label, entry in degradations.items():
            cell = {
                r["reference"]: r for r in entry["bd"] if r["metric"] == metric and r["method"] == "cubic"
            }
            found = [(cell.get(ref) or {}).get(key_name) for ref in references]
            values = ["n/a" if v is None else number.format(v) for v in found]
            lines.append(
                "| " + " | ".join([label, _num((entry.get("input") or {}).get("psnr"), 2), *values]) + " |"
            )
        lines.append("")
    qualities = (results.get("ugicm") or {}).get("qualities") or []
    if qualities:
        lines += [
            "`ugicm/restore` − `ugicm/human` PSNR (dB) on the same files, per quality (bpp in brackets):",
            "",
        ]
        lines += _table(["degradation"] + [f"q{q:g}" for q in qualities])
        for label, entry in degradations.items():
            human = {p["setting"]: p for p in entry["curves"].get(HUMAN, [])}
            restore = {p["setting"]: p for p in entry["curves"].get(RESTORE, [])}
            cells = []
            for q in qualities:
                s = f"q{q:g}"
                if s in human and s in restore:
                    cells.append(f"{restore[s]['psnr'] - human[s]['psnr']:+.2f} ({human[s]['bpp']:.3f})")
                else:
                    cells.append("–")
            lines.append("| " + " | ".join([label, *cells]) + " |")
    return lines
