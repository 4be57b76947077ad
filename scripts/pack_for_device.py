"""Packs what a GPU training run needs into one folder that fits the device tool's carry limit.

    python scripts/pack_for_device.py ~/.cache/ugicm/runs/main10/last.pt --out .devcarry
    python scripts/pack_for_device.py weights/ugicm-hpacg-128-192-r10.safetensors  # the shipped state

The device machine sees the repository, not ../shared, and takes at most 64 MiB of carried
files. This writes ``OUT/model.pt`` (the model state alone, as weights.compact_state stores it,
less the CDF tables that training never reads; the optimizer restarts), ``OUT/train/`` (the
training images re-encoded as JPEG quality 85), ``OUT/val/`` (the fixed validation crops,
lossless), and checks the total with the wheels in ``.whl`` (scripts/device/wheels.sh fetches
them; without them the machine cannot import CompressAI) and the tracked files (move
``weights/*.safetensors`` aside while the device tool sends the tree: they count).
Then, with the device tool, ``bash scripts/device/call.sh`` carrying ``.devcarry`` and ``.whl``
(scripts/device/schedule.sh runs the schedule; scripts/device/collect.py brings it back).
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ugicm_codec.models import CODING_TABLES
from ugicm_codec.shared import shared_path
from ugicm_codec.training.config import TrainConfig
from ugicm_codec.training.data import list_images, validation_images
from ugicm_codec.weights import compact_state, training_state

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 64 * 1024 * 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / ".devcarry")
    parser.add_argument("--train", nargs="+", default=[str(shared_path("data", "train"))])
    parser.add_argument("--val", default=str(shared_path("data", "val")))
    parser.add_argument("--quality", type=int, default=85)
    parser.add_argument("--wheels", type=Path, default=ROOT / ".whl", help="the wheels the device lacks")
    args = parser.parse_args(argv)

    wheels = sum(p.stat().st_size for p in args.wheels.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"no wheels in {args.wheels}: run scripts/device/wheels.sh first")
    state = training_state(args.checkpoint)
    model = {k: v for k, v in compact_state(state["model"]).items() if not k.endswith(CODING_TABLES)}
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "step": state["step"], "config": state["config"]}, args.out / "model.pt")

    train = args.out / "train"
    train.mkdir(exist_ok=True)
    psnr = []  # what the re-encoding costs the training targets
    for i, path in enumerate(list_images(args.train)):
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        rgb.save(target := train / f"{i:04d}-{path.stem}.jpg", quality=args.quality)
        with Image.open(target) as back:
            mse = np.mean((np.asarray(back, np.float64) - np.asarray(rgb, np.float64)) ** 2)
        psnr.append(10 * np.log10(255**2 / max(mse, 1e-10)))
    print(
        f"training images as JPEG quality {args.quality}: {np.mean(psnr):.2f} dB from the originals "
        f"on average, {np.min(psnr):.2f} at worst"
    )
    val = args.out / "val"
    val.mkdir(exist_ok=True)
    for i, crop in enumerate(validation_images(args.val, TrainConfig.val_images, 256)):
        Image.fromarray(crop.mul(255).round().byte().permute(1, 2, 0).numpy()).save(val / f"{i}.png")
    packed = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    tree = sum(
        (ROOT / f).stat().st_size
        for f in tracked.decode().split("\0")
        if f and (ROOT / f).is_file() and not f.endswith(".safetensors")
    )
    total = packed + wheels + tree
    print(
        f"{args.out}: {packed / 2**20:.1f} MiB; with .whl and the tree (weights aside) "
        f"{total / 2**20:.1f} MiB of 64; step {state['step']}"
    )
    if total > LIMIT:
        raise SystemExit("too large for the device carry: lower --quality")


if __name__ == "__main__":
    main()
