"""Speed and memory of ugicm next to CompressAI's hyperprior and Pillow's JPEG, WebP and AVIF.

Each (codec, device, image) configuration runs in a fresh Python process, so that its memory
figures are its own: the process's peak resident set (Python, libraries, model and coding) and
the rise of that peak while coding, measured by resetting the kernel's high-water mark
(/proc/self/clear_refs) after set-up, or from getrusage's ru_maxrss where that is not possible.
Times are the median of ``repeat`` runs after one warm-up run, from an image already in memory
to bytes (encode) and from bytes to an RGB array (decode).

The CompressAI model is ``bmshj2018_hyperprior(quality=4, pretrained=False)``: random weights, so
its speed is real but its bits per pixel mean nothing. Its rate is the entropy-coded strings
without any container.

Run as ``python -m ugicm_codec.evaluation.bench CONFIG_JSON`` it is that child process.
"""

from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .shared import KODAK_DIR

# ugicm times the human decode (β=0); ugicm-machine the same file's machine decode (β=1), which
# runs the machine adapters as well.
LEARNED = ("ugicm", "ugicm-machine", "bmshj2018")
PILLOW = ("jpeg", "webp", "avif")
CODECS = LEARNED + PILLOW
SYNTHETIC_PREFIX = "synthetic:"
SYNTHETIC_DEFAULT = "synthetic:768x512"
PILLOW_QUALITY = 75  # the default quality of Pillow's JPEG and AVIF encoders
COMPRESSAI_QUALITY = 4


def default_images() -> list[str]:
    kodim01 = KODAK_DIR / "kodim01.png"
    return [str(kodim01)] if kodim01.is_file() else [SYNTHETIC_DEFAULT]


def image_label(image: str) -> str:
    return (
        image.replace(SYNTHETIC_PREFIX, "synthetic ")
        if image.startswith(SYNTHETIC_PREFIX)
        else Path(image).name
    )


def codec_label(codec: str) -> str:
    if codec == "bmshj2018":
        return f"compressai bmshj2018-hyperprior q{COMPRESSAI_QUALITY} (random weights)"
    if codec == "ugicm-machine":
        return "ugicm (machine decode)"
    return codec


# ------------------------------------------------------------------------- parent side
def _checkout_env(checkout: str | None) -> tuple[dict | None, str | None]:
    """(environment, working directory) that make ``python -m ugicm_codec…`` run the package of
    another checkout (the "before" of a comparison), or (None, None) for this one."""
    if not checkout:
        return None, None
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([checkout, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    return env, checkout


def run_configuration(config: dict, timeout: float = 1800, checkout: str | None = None) -> dict:
    """Runs one configuration in a fresh interpreter and returns its measurements (or an error);
    with ``checkout``, that checkout's bench (and codec) runs it."""
    cmd = [sys.executable, "-m", "ugicm_codec.evaluation.bench", json.dumps(config)]
    env, cwd = _checkout_env(checkout)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    except subprocess.TimeoutExpired:
        return {**config, "error": f"took longer than {timeout:g} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if lines:
        try:
            return {**config, **json.loads(lines[-1])}
        except ValueError:
            pass
    tail = [line for line in proc.stderr.splitlines() if line.strip()]
    return {**config, "error": tail[-1] if tail else f"worker exited with status {proc.returncode}"}


def startup_lines(workdir: Path, repeat: int = 3, checkout: str | None = None) -> dict:
    """Wall seconds (median of ``repeat``) of the commands a shell user runs first, each in a
    fresh interpreter, next to ``python -c "import torch"``: help, version, info, a usage error,
    a missing input, an output that cannot be written, and the encode and decode of tiny images.
    ``workdir`` holds the inputs (made once by this checkout's codec; the weights are the same)."""
    from PIL import Image

    workdir.mkdir(parents=True, exist_ok=True)
    png32, png64, ugc64 = workdir / "32x32.png", workdir / "64x64.png", workdir / "64x64.ugc"
    if not ugc64.exists():
        Image.fromarray(synthetic_image(32, 32)).save(png32)
        Image.fromarray(synthetic_image(64, 64)).save(png64)
        subprocess.run(
            [sys.executable, "-m", "ugicm_codec.cli", "encode", str(png64), "-o", str(ugc64), "--quiet"],
            check=True,
            capture_output=True,
        )
    out = workdir / "out"
    out.mkdir(exist_ok=True)
    cli = [sys.executable, "-m", "ugicm_codec.cli"]
    commands = {
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        "ugicm --help": cli + ["--help"],
        "ugicm --version": cli + ["--version"],
        "ugicm info (64x64 file)": cli + ["info", str(ugc64)],
        "usage error (--prefer robot)": cli
        + ["decode", str(ugc64), "--prefer", "robot", "-o", str(out / "r.png")],
        "missing input (decode)": cli + ["decode", str(workdir / "missing.ugc"), "-o", str(out / "m.png")],
        "unwritable output (encode)": cli + ["encode", str(png32), "-o", "/proc/ugicm-bench.ugc"],
        "encode 32x32 PNG": cli + ["encode", str(png32), "-o", str(out / "e.ugc"), "--threads", "2"],
        "decode 64x64 file": cli + ["decode", str(ugc64), "-o", str(out / "d.png"), "--threads", "2"],
    }
    env, cwd = _checkout_env(checkout)
    lines = {}
    for name, cmd in commands.items():
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, env=env, cwd=cwd)
            times.append(time.perf_counter() - start)
        lines[name] = {"wall_s": statistics.median(times), "status": proc.returncode}
    return lines


def markdown_report(rows: list[dict], startup: dict, command: str) -> str:
    """Before/after tables in Markdown: the start-up lines, then each configuration."""

    def cell(value, digits=2):
        return "–" if value is None else f"{value:.{digits}f}"

    lines = [
        "# ugicm speed",
        "",
        f"Generated by `{command}` (each configuration in a fresh process; "
        "times are medians after a warm-up run).",
        "",
    ]
    if startup:
        versions = [v for v in ("before", "after") if v in startup]
        lines += [
            "## Start-up (wall seconds, fresh interpreter)",
            "",
            "| command | " + " | ".join(versions) + " |",
            "|---|" + "---:|" * len(versions),
        ]
        for name in startup[versions[-1]]:
            lines.append(
                f"| {name} | "
                + " | ".join(
                    f"{startup[v][name]['wall_s']:.2f} (exit {startup[v][name]['status']})"
                    if name in startup[v]
                    else "–"
                    for v in versions
                )
                + " |"
            )
        lines.append("")
    lines += [
        "## Coding",
        "",
        "| image | codec | version | threads | encode s | decode s | enc MP/s | dec MP/s | parse s | "
        "synthesis s | MAC/px | GMAC/s | imports s | model load s | peak RSS MiB | CompressAI hyperprior "
        "decode, same process, s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {image_label(r['image'])} | {codec_label(r['codec'])} | {r.get('version', '')} | "
                f"error: {r['error']} |"
            )
            continue
        start = r.get("setting", {}).get("startup", {})
        lines.append(
            " | ".join(
                [
                    f"| {image_label(r['image'])} ({r['width']}x{r['height']})",
                    codec_label(r["codec"]),
                    r.get("version", ""),
                    str(r.get("threads", "")),
                    cell(r["encode_s"], 3),
                    cell(r["decode_s"], 3),
                    cell(r["encode_mp_per_s"]),
                    cell(r["decode_mp_per_s"]),
                    cell(r.get("parse_s"), 3),
                    cell(r.get("synthesis_s"), 3),
                    "–"
                    if r.get("synthesis_macs_per_pixel") is None
                    else f"{r['synthesis_macs_per_pixel'] / 1e3:.0f}k",
                    cell(r.get("synthesis_gmac_per_s"), 1),
                    cell(start.get("imports_s")),
                    cell(start.get("model_load_s")),
                    cell(r["peak_rss_mib"], 0),
                    cell(r.get("compressai_decode_same_process_s"), 3),
                ]
            )
            + " |"
        )
    lines += [
        "",
        "bmshj2018: CompressAI `bmshj2018_hyperprior(quality=4, pretrained=False)`, random weights: "
        "its timing is real, its bpp meaningless. Parse: entropy decoding (exact, CPU); synthesis: g_s "
        "to pixels. MAC/px: g_s's multiply-accumulates per output pixel; GMAC/s: the rate the synthesis "
        "reached. Rows without those figures come from a checkout whose bench did not report them.",
        "",
    ]
    gemm = [r for r in rows if r.get("gemm_gmac_per_s")]
    if gemm:
        lines += [
            "A 2048×2048 matrix product in the synthesis' arithmetic reached "
            + ", ".join(
                f"{r['gemm_gmac_per_s']:.0f} GMAC/s ({codec_label(r['codec'])}, {r.get('device', 'cpu')})"
                for r in gemm
            )
            + " in the same processes: about what the cores can give a convolution.",
            "",
        ]
    batched = [r for r in rows if r.get("batch_files")]
    if batched:
        lines += [
            "## Many files (`Codec.decode_batch`)",
            "",
            "| image | codec | device | files | seconds | MP/s |",
            "|---|---|---|---:|---:|---:|",
        ]
        lines += [
            f"| {image_label(r['image'])} | {codec_label(r['codec'])} | {r.get('device', '')} | "
            f"{r['batch_files']} | {r['batch_decode_s']:.3f} | {r['batch_decode_mp_per_s']:.2f} |"
            for r in batched
        ]
    return "\n".join(lines)


# -------------------------------------------------------------------------- child side
def _memory_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
        return int(match.group(1)) if match else None
    except OSError:
        return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5: reset the peak resident set size to the current one (Linux >= 4.0)
        return True
    except OSError:
        return False


def _maxrss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB elsewhere


def synthetic_image(width: int, height: int):
    """A deterministic photo-like test card: smooth gradients, some texture, mild noise."""
    import numpy as np

    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 128 + 100 * np.sin(x / 53.0) * np.cos(y / 71.0)
    g = 255 * x / max(width - 1, 1)
    b = 128 + 60 * np.sin((x + y) / 9.0) + 40 * np.cos(np.hypot(x - width / 2, y - height / 2) / 17.0)
    noise = np.random.default_rng(0).normal(0, 6, (height, width, 3))
    rgb = np.stack([r, g, b], axis=2) + noise
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def _load_image(image: str):
    if image.startswith(SYNTHETIC_PREFIX):
        w, h = (int(v) for v in image[len(SYNTHETIC_PREFIX) :].split("x"))
        return synthetic_image(w, h)
    from .images import load_rgb

    return load_rgb(Path(image))


def synthesis_macs_per_pixel(model, beta: float, level: float, side: int = 8) -> float:
    """Multiply-accumulates of g_s per output pixel at a preference and rate level, counted by
    torch's FLOP counter on a ``side``² latent (convolutions, transposed ones and the GDN's
    matrix products; a MAC is two FLOPs). Border padding does not change the count."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.g_s.parameters()).device
    y = torch.zeros(1, model.arch.M, side, side, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.synthesis(y, level, beta)
    pixels = (side * 16) ** 2
    return counter.get_total_flops() / 2 / pixels


def _setup_ugicm(config, rgb):
    start = time.perf_counter()
    import torch

    from ..codec import DEFAULT_QUALITY, Codec

    imported = time.perf_counter()
    options = {"precision": config["precision"]} if config.get("precision") else {}
    codec = Codec(
        weights=config.get("weights"), device=config["device"], threads=config.get("threads"), **options
    )
    loaded = time.perf_counter()
    quality = DEFAULT_QUALITY
    prefer = "machine" if config["codec"] == "ugicm-machine" else "human"

    def encode():
        return codec.encode_detailed(rgb, quality=quality).data

    def decode(data):
        return codec.decode_array(data, prefer)[0]

    setting = {
        "quality": quality,
        "model": codec.info.name,
        "weights_sha256": codec.info.sha256[:16],
        "prefer": prefer,
        "precision": getattr(codec, "precision", "float32"),
        "startup": {"imports_s": imported - start, "model_load_s": loaded - imported},
    }
    setting["_codec"] = codec
    return encode, decode, len, setting, torch


def _batch_decode(codec, data, prefer: str, files: int, repeat: int, cuda: bool) -> dict:
    """``Codec.decode_batch`` of ``files`` copies of one file, stacked: many files' throughput."""
    import torch

    def run():
        codec.decode_batch([data] * files, prefer, stack=True)
        if cuda:
            torch.cuda.synchronize()

    codec.decode_batch([data] * min(files, 2), prefer, stack=True)  # warm-up
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    f = codec.parse(data)
    median = statistics.median(seconds)
    return {
        "batch_files": files,
        "batch_decode_s": median,
        "batch_decode_mp_per_s": files * f.width * f.height / 1e6 / median,
    }


def _ugicm_details(codec, data, prefer: str, repeat: int, cuda: bool) -> dict:
    """The decode split into parse (entropy decoding) and synthesis, g_s's multiply-accumulates
    per pixel and the rate it reached."""
    import torch

    from ..preferences import parse_preference

    beta = parse_preference(prefer)
    f = codec.parse(data)
    parse_s, synthesis_s = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        y_hat = codec._decode_latent(f)
        parse_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        codec._synthesis(y_hat, f, beta)
        if cuda:
            torch.cuda.synchronize()
        synthesis_s.append(time.perf_counter() - start)
    macs = synthesis_macs_per_pixel(codec.model, beta, f.rate_level)
    synthesis = statistics.median(synthesis_s)
    return {
        "parse_s": statistics.median(parse_s),
        "synthesis_s": synthesis,
        "synthesis_macs_per_pixel": macs,
        "synthesis_gmac_per_s": macs * f.width * f.height / synthesis / 1e9,
        "gemm_gmac_per_s": gemm_rate(codec, cuda),
    }


def gemm_rate(codec, cuda: bool, n: int = 2048, runs: int = 5) -> float:
    """GMAC/s of an n×n matrix product in the arithmetic of the codec's synthesis (bf16 autocast
    or float32, on its device): about what this machine's cores can give a convolution, so that
    the synthesis' rate can be read against it."""
    import torch

    from ..synthesis import arithmetic, plan

    p = plan(codec.precision, codec.device)
    a = torch.randn(n, n, device=codec.device)
    with torch.no_grad(), arithmetic(p, codec.device):
        a @ a  # warm-up
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(runs):
            a @ a
        if cuda:
            torch.cuda.synchronize()
    return runs * n**3 / (time.perf_counter() - start) / 1e9


def _compressai_decode_here(rgb, config: dict, repeat: int) -> dict:
    """CompressAI's bmshj2018 hyperprior decode of the same image, timed in this process."""
    encode, decode, size, _, _ = _setup_bmshj2018({**config, "threads": None}, rgb)
    out = encode()
    decode(out)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        decode(out)
        times.append(time.perf_counter() - start)
    return {"compressai_decode_same_process_s": statistics.median(times)}


def _setup_bmshj2018(config, rgb):
    import warnings

    import torch
    import torch.nn.functional as F

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from compressai.zoo import bmshj2018_hyperprior

    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    device = torch.device(config["device"])
    net = bmshj2018_hyperprior(quality=COMPRESSAI_QUALITY, pretrained=False).eval().requires_grad_(False)
    net.update(force=True)
    net = net.to(device)
    h, w = rgb.shape[:2]

    def encode():
        x = torch.from_numpy(rgb).to(device).permute(2, 0, 1)[None].float().div_(255)
        x = F.pad(x, (0, (-w) % 64, 0, (-h) % 64), mode="replicate")
        with torch.no_grad():
            return net.compress(x)

    def decode(out):
        with torch.no_grad():
            x_hat = net.decompress(out["strings"], out["shape"])["x_hat"]
        x_hat = x_hat[0, :, :h, :w].clamp_(0, 1).mul_(255).round_()
        return x_hat.to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    def size(out):
        return sum(len(s) for strings in out["strings"] for s in strings)

    return encode, decode, size, {"quality": COMPRESSAI_QUALITY, "pretrained": False}, torch


def _setup_pillow(config, rgb):
    from .baselines import BASELINES

    codec = BASELINES[config["codec"]]
    threads = config.get("threads") or os.cpu_count() or 1

    def encode():
        return codec.encode(rgb, PILLOW_QUALITY, threads=threads)

    setting = {"quality": PILLOW_QUALITY, "options": codec.options, "library": codec.library()}
    return encode, codec.decode, len, setting, None


def _measure(config: dict) -> dict:
    rgb = _load_image(config["image"])
    setup = {"ugicm": _setup_ugicm, "ugicm-machine": _setup_ugicm, "bmshj2018": _setup_bmshj2018}.get(
        config["codec"], _setup_pillow
    )
    encode, decode, size, setting, torch = setup(config, rgb)
    codec = setting.pop("_codec", None)
    cuda = torch is not None and config["device"].startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    data = encode()  # warm-up: lazy initialisation, caches, cuDNN autotuning
    decode(data)
    sync()
    setup_peak = _memory_kib("VmHWM") or _maxrss_kib()
    rss_before = _memory_kib("VmRSS")
    exact = rss_before is not None and _reset_peak()
    if not exact:
        rss_before = _maxrss_kib()
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    encode_s, decode_s = [], []
    for _ in range(config["repeat"]):
        start = time.perf_counter()
        data = encode()
        sync()
        encode_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        decode(data)
        sync()
        decode_s.append(time.perf_counter() - start)

    coding_peak = (_memory_kib("VmHWM") if exact else _maxrss_kib()) or rss_before
    h, w = rgb.shape[:2]
    megapixels = w * h / 1e6
    result = {
        "width": w,
        "height": h,
        "megapixels": megapixels,
        "bytes": size(data),
        "bpp": size(data) * 8 / (w * h),
        "encode_s": statistics.median(encode_s),
        "decode_s": statistics.median(decode_s),
        "encode_runs_s": encode_s,
        "decode_runs_s": decode_s,
        "encode_mp_per_s": megapixels / statistics.median(encode_s),
        "decode_mp_per_s": megapixels / statistics.median(decode_s),
        "peak_rss_mib": max(setup_peak, coding_peak) / 1024,
        "coding_rss_mib": max(0, coding_peak - rss_before) / 1024,
        "memory_method": "VmHWM reset after set-up" if exact else "ru_maxrss rise (coarse)",
        "setting": setting,
    }
    if codec is not None:
        result.update(_ugicm_details(codec, data, setting["prefer"], config["repeat"], cuda))
        if config.get("batch"):
            result.update(
                _batch_decode(codec, data, setting["prefer"], config["batch"], config["repeat"], cuda)
            )
        if config.get("with_compressai"):
            result.update(_compressai_decode_here(rgb, config, config["repeat"]))
    if torch is not None:
        result["threads"] = torch.get_num_threads()
        result["torch"] = torch.__version__
        result["cuda_available"] = torch.cuda.is_available()
        if cuda:
            result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
            result["gpu"] = torch.cuda.get_device_name()
    else:
        # libjpeg and libwebp encode on one thread; libavif uses up to max_threads.
        result["threads"] = (config.get("threads") or os.cpu_count() or 1) if config["codec"] == "avif" else 1
    return result


def _child(argument: str) -> int:
    config = json.loads(argument)
    try:
        print(json.dumps(_measure(config)), flush=True)
        return 0
    except Exception as e:  # reported as one line by the parent
        first = str(e).splitlines()[0] if str(e) else ""
        print(json.dumps({"error": f"{type(e).__name__}: {first}"}), flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
