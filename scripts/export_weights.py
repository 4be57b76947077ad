"""Exports a training checkpoint as the shipped weights and records it in weights/manifest.json
(``ugicm_codec/model_weights/``, which ``weights/`` links to).

    python scripts/export_weights.py ~/.cache/ugicm/runs/main/last.pt
    ugicm eval ../shared/data/kodak --out runs/eval-kodak --qualities 0,25,50,75,100
    python scripts/export_weights.py ~/.cache/ugicm/runs/main/last.pt --kodak runs/eval-kodak/results.json

The manifest keeps what a user needs to trust the file: its SHA-256, the architecture, the
training steps and data, the teacher, and (with --kodak) the Kodak figures measured on it. The
export is deterministic, so the second run writes the same file and only adds the figures.

    python scripts/export_weights.py --restore ~/.cache/ugicm/runs/restore/last.pt

writes the restore decode trained by ``ugicm train-restore`` as the default model's add-on
(``<model>.restore.safetensors``, float16) and records it in that model's manifest entry; the
model's own file, and so every .ugc file and its human and machine decodes, stay as they are.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import subprocess
from pathlib import Path

from ugicm_codec.models import build_model
from ugicm_codec.weights import DIGEST_BYTES, MANIFEST, export, export_restore, locate, training_state

ROOT = Path(__file__).resolve().parents[1]


def kodak_figures(results: dict, digest: str) -> dict:
    """The manifest's summary of an eval run on Kodak: every point of both decodes and the human
    decode's BD-rates. Refused unless the run measured exactly these weights."""
    measured = (results.get("ugicm") or {}).get("weights_sha256")
    if measured != digest:
        raise SystemExit(
            f"--kodak: that evaluation measured weights {str(measured)[:16]}…, not {digest[:16]}…"
        )
    if not results.get("kodak"):
        raise SystemExit("--kodak: that evaluation is not of the 24 Kodak images")
    machine = {p["setting"]: p for p in results["curves"]["ugicm/machine"]}
    return {
        "measured": results["created"],
        "points": [
            {
                "quality": p["quality"],
                "bpp": round(p["bpp"], 4),
                "psnr": round(p["psnr"], 3),
                "ms_ssim": round(p["ms_ssim"], 5),
                "machine_psnr": round(machine[p["setting"]]["psnr"], 3),
            }
            for p in results["curves"]["ugicm/human"]
        ],
        "bd_rate_psnr_percent": {
            f"{r['reference']} ({r['reference_kind']})": round(r["bd_rate_percent"], 1)
            for r in results["bd"]
            if r["test"] == "ugicm/human"
            and r["metric"] == "psnr"
            and r["method"] == "cubic"
            and r["bd_rate_percent"] is not None
            and r["reference"] != "ugicm/machine"
        },
    }


# Where the shipped weights sit in a commit: weights/ before they became package data.
SHIPPED_PATHS = ("ugicm_codec/model_weights", "weights")


def shipped_in(file: str, sha256: str) -> tuple[str, str] | None:
    """(the latest commit whose copy of FILE is the file with this digest, that copy's path), or
    None (not committed, or not a git checkout): what a user needs to fetch the weights that made
    an old .ugc file."""
    for where in SHIPPED_PATHS:
        try:
            log = subprocess.run(
                ["git", "-C", str(ROOT), "log", "--format=%H", "--", f"{where}/{file}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            for commit in log:
                blob = subprocess.run(
                    ["git", "-C", str(ROOT), "show", f"{commit}:{where}/{file}"],
                    capture_output=True,
                    check=True,
                ).stdout
                if hashlib.sha256(blob).hexdigest() == sha256:
                    return commit[:12], f"{where}/{file}"
        except (OSError, subprocess.CalledProcessError):
            pass
    return None


def keep_as_earlier(manifest: dict, digest: str) -> None:
    """Moves the default entry being replaced into the manifest's ``earlier`` record, keyed as
    its files' headers name it, so the decoder can tell a user where those weights are."""
    previous = manifest.get("models", {}).get(manifest.get("default"))
    if not previous or previous.get("sha256") in (None, digest):
        return
    commit, path = shipped_in(previous["file"], previous["sha256"]) or (None, None)
    entry = {
        "architecture": previous["architecture"],
        "file": previous["file"],
        "sha256": previous["sha256"],
        "commit": commit,
    }
    if path and path != f"weights/{previous['file']}":
        entry["path"] = path  # where the file sits in that commit (weights/ unless said)
    manifest.setdefault("earlier", {})[previous["sha256"][: 2 * DIGEST_BYTES]] = entry


def export_restore_addon(checkpoint: Path, out: Path, note: str = "") -> str:
    """Writes the restore decode of ``ugicm train-restore``'s ``checkpoint`` as the add-on of the
    default model in ``out`` and records it in the manifest; returns the add-on's SHA-256.
    Refused unless the run trained on that model's very weights."""
    import torch

    from ugicm_codec.weights import load_model

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    info = locate(out)
    if state["config"]["arch"] != info.name:
        raise SystemExit(f"--restore: that run trained on {state['config']['arch']}, not {info.name}")
    if info.sha256[:16] not in state["config"].get("init_note", ""):
        raise SystemExit(f"--restore: that run did not train on these weights (sha256 {info.sha256[:16]}…)")
    model = load_model(info)
    model.load_restore_state(state["restore"])
    name = f"{info.name}.restore.safetensors"
    digest = export_restore(model, out / name)
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    cfg = state["config"]
    manifest["models"][info.name]["restore"] = {
        "file": name,
        "sha256": digest,
        "format": "safetensors, float16: the restore decode's embedding and blocks (UGICM.attach_restore)",
        "steps": int(state["step"]),
        "batch_size": cfg["batch_size"],
        "crop": cfg["crop"],
        "lr": cfg["lr"],
        "semantic_weight": cfg["semantic_weight"],
        "teacher": cfg["teacher"],
        "data": cfg["data"],
        "exported": datetime.date.today().isoformat(),
        "note": note,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"{out / name}: sha256 {digest}, step {state['step']}")
    return digest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument(
        "--restore",
        action="store_true",
        help="CHECKPOINT is an `ugicm train-restore` run's: export its restore decode as the add-on",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "weights")
    parser.add_argument(
        "--kodak",
        type=Path,
        help="results.json of `ugicm eval` on Kodak with these weights: its figures are recorded",
    )
    parser.add_argument("--note", default="")
    parser.add_argument(
        "--data",
        nargs="+",
        help="the training sets to record when the checkpoint's config names a packed "
        "copy (scripts/pack_for_device.py's .devcarry/train)",
    )
    args = parser.parse_args(argv)
    if args.restore:
        export_restore_addon(args.checkpoint, args.out, args.note)
        return

    state = training_state(args.checkpoint)
    cfg = state["config"]
    model = build_model(cfg["arch"])
    model.load_state_dict(state["model"])
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"{cfg['arch']}.safetensors"
    digest = export(model, args.out / name)

    manifest_path = args.out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": {}}
    entry = {
        "file": name,
        "sha256": digest,
        "architecture": cfg["arch"],
        "format": "safetensors; transforms float16, entropy model float32 with int32 CDF tables",
        "steps": int(state["step"]),
        "stage1_steps": cfg["stage1_steps"],
        "stage": 2 if state["step"] > cfg["stage1_steps"] else 1,
        "batch_size": cfg["batch_size"],
        "crop": cfg["crop"],
        "lambdas": list(model.arch.lambdas),
        "data": args.data or cfg["train"],
        "teacher": cfg["teacher"] if cfg.get("semantic", True) else None,
        "semantic_weight": cfg["semantic_weight"],
        "exported": datetime.date.today().isoformat(),
        "note": args.note,
    }
    if "context_steps" in cfg:  # ugicm train-context: the entropy model refitted, step unchanged
        entry["context_steps"] = cfg["context_steps"]
        entry["context_crops"] = cfg["context_crops"]
    if args.kodak:
        entry["kodak"] = kodak_figures(json.loads(args.kodak.read_text()), digest)
    keep_as_earlier(manifest, digest)
    manifest["default"] = cfg["arch"]
    manifest["models"][cfg["arch"]] = entry
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"{args.out / name}: sha256 {digest}, step {state['step']}")


if __name__ == "__main__":
    main()
