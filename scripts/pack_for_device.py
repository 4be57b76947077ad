"""Packs what a GPU training run needs into one folder that fits the device tool's carry limit.

    python scripts/pack_for_device.py ~/.cache/ugicm/runs/main10/last.pt --out .devcarry

The device machine sees the repository, not ../shared, and takes at most 64 MiB of carried
files. This writes ``OUT/model.pt`` (the model state alone, float16: the optimizer restarts) and
``OUT/train/`` (the training images re-encoded as JPEG quality 92), and checks the total.
On the device machine:

    ugicm train configs/gpu.toml --train .devcarry/train --val "" --run-dir /tmp/run \\
        --init .devcarry/model.pt

and bring back /tmp/run/last.pt (or its export) under $OUT.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

from ugicm_codec.training.data import list_images

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 64 * 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / ".devcarry")
    parser.add_argument("--train", nargs="+", default=[str(ROOT.parent / "shared" / "data" / "train")])
    parser.add_argument("--quality", type=int, default=92)
    args = parser.parse_args()

    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    model = {k: (v.half() if v.is_floating_point() else v) for k, v in state["model"].items()}
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "step": state["step"], "config": state["config"]}, args.out / "model.pt")

    train = args.out / "train"
    train.mkdir(exist_ok=True)
    for i, path in enumerate(list_images(args.train)):
        with Image.open(path) as im:
            im.convert("RGB").save(train / f"{i:04d}-{path.stem}.jpg", quality=args.quality)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{args.out}: {total / 2**20:.1f} MiB (limit 64 MiB), step {state['step']}")
    if total > LIMIT:
        raise SystemExit("too large for the device carry: lower --quality")


if __name__ == "__main__":
    main()
