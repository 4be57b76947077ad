"""Fits a checkerboard-context entropy model to a trained codec's frozen transforms.

    python scripts/train_context.py ~/.cache/ugicm/runs/gpu2/s2m.pt --run-dir ~/.cache/ugicm/runs/ctx
    python scripts/export_weights.py ~/.cache/ugicm/runs/ctx/last.pt
    python scripts/train_context.py OTHER.pt --run-dir ~/.cache/ugicm/runs/ctx --graft-to OUT.pt

The analysis and synthesis transforms, the rate gains and the PCDM stay exactly as trained; the
model grows into the architecture with a context (``--arch``), and only the entropy model (h_a,
h_s, the factorized prior of z and the context's convolutions) is trained, on the rate alone.
Since g_a is frozen, y = g_a(x) of the training crops is computed once and cached
(``RUN_DIR/latents.pt``), and each step costs only the small hyper transforms: this runs on a CPU.

The loss is the mean over the batch of log(bits): each crop's rate falls by the same fraction
wherever it sits on the rate ladder, which is what a BD-rate measures (a plain sum of bits would
leave the lowest rates, with 1/20 of the bits, almost untrained). Distortion is not a term: with
the decoder frozen, better means can only bring ŷ closer to y. Interrupted runs resume from
``RUN_DIR/last.pt``; a JSON line per log interval goes to ``RUN_DIR/logs.jsonl``.

``--graft-to`` puts the run's fitted entropy model on another checkpoint with the same analysis
transform (an ablation's, whose decoders differ): its files then code to the same bits, and only
the decodes differ.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ugicm_codec.models import bits_per_pixel, build_model
from ugicm_codec.training.data import RandomCrops, validation_images
from ugicm_codec.training.loop import atomic_save
from ugicm_codec.weights import training_state

CACHE_BATCH = 16


def cache_latents(model, folders: list[str], crop: int, count: int, seed: int) -> torch.Tensor:
    """y = g_a(x) of ``count`` random flipped crops (float16, to halve the memory)."""
    data = RandomCrops(folders, crop, CACHE_BATCH, seed=seed)
    out = []
    with torch.no_grad():
        for i in range(-(-count // CACHE_BATCH)):
            x, _ = data.next_batch()
            out.append(model.g_a(x.contiguous(memory_format=torch.channels_last)).float().half())
            if i % 50 == 0:
                print(f"latents: {i * CACHE_BATCH}/{count}", flush=True)
    return torch.cat(out)[:count]


def entropy_side(model) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters this fit trains; everything else is frozen."""
    prefixes = ("h_a.", "h_s.", "entropy_bottleneck.", "context.")
    return [(n, p) for n, p in model.named_parameters()
            if n.startswith(prefixes) and not n.endswith(".quantiles")]


def estimated_bits(model, y: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Per-crop bits of the entropy model on y (noise in training mode, rounding in eval mode,
    as compress() codes them)."""
    _, likelihoods = model.latent_forward(y, level)
    pixels = (y.size(2) * 16) * (y.size(3) * 16)
    return bits_per_pixel(likelihoods, pixels) * pixels


def graft(fitted: dict, other: dict, arch: str, out: Path) -> None:
    """``other``'s transforms with ``fitted``'s entropy model (refused unless g_a is the same)."""
    model = build_model(arch)
    model.load_grown_state_dict(other["model"])
    state = model.state_dict()
    if any(not torch.equal(v.float(), state[k]) for k, v in fitted["model"].items() if k.startswith("g_a.")):
        raise SystemExit("the two checkpoints have different analysis transforms")
    entropy = {n for n, _ in entropy_side(model)} | {
        k for k in state if k.startswith(("entropy_bottleneck.", "gaussian_conditional."))}
    state.update({k: v for k, v in fitted["model"].items() if k in entropy})
    model.load_state_dict(state)
    cfg = dict(other["config"], arch=arch, **{k: v for k, v in fitted["config"].items() if k.startswith("context_")})
    atomic_save({"model": model.state_dict(), "step": other["step"], "config": cfg}, out)
    print(f"{out}: {len(entropy)} entropy-model tensors from the fitted run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("init", type=Path, help="checkpoint or shipped weights whose transforms are kept")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--arch", default="ugicm-hpacg-128-192-r10")
    parser.add_argument("--data", nargs="+", default=["../shared/data/train"])
    parser.add_argument("--val", default="../shared/data/val")
    parser.add_argument("--crops", type=int, default=12000, help="training crops whose latents are cached")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4, help="for the new context modules")
    parser.add_argument("--pretrained-lr", type=float, default=5e-5, help="for h_a, h_s and the z prior")
    parser.add_argument("--minutes", type=float, default=60.0, help="stop after this much wall time")
    parser.add_argument("--max-steps", type=int, help="stop at this context step (smoke runs)")
    parser.add_argument("--log-every", type=int, default=250, help="validate, log and checkpoint")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--graft-to", type=Path, help="write INIT with this run's entropy model here, and stop")
    args = parser.parse_args()
    if args.graft_to:
        return graft(training_state(args.run_dir / "last.pt"), training_state(args.init), args.arch, args.graft_to)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.run_dir.mkdir(parents=True, exist_ok=True)

    parent = training_state(args.init)
    model = build_model(args.arch)
    try:
        model.load_grown_state_dict(parent["model"])
    except ValueError as e:
        raise SystemExit(f"{args.init} does not fit {args.arch}: {e}") from None
    model.requires_grad_(False)
    trained = entropy_side(model)
    for _, p in trained:
        p.requires_grad_(True)
    new = {n for n, _ in trained if n.startswith("context.")}
    optimizer = torch.optim.Adam([
        {"params": [p for n, p in trained if n in new], "lr": args.lr},
        {"params": [p for n, p in trained if n not in new], "lr": args.pretrained_lr},
    ])
    quantiles = model.entropy_bottleneck.quantiles.requires_grad_(True)
    aux_optimizer = torch.optim.Adam([quantiles], lr=1e-3)

    checkpoint = args.run_dir / "last.pt"
    step = int(parent["config"].get("context_steps", 0))  # a context fit continued counts on
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for group, lr in zip(optimizer.param_groups, (args.lr, args.pretrained_lr)):
            group["lr"] = lr  # a resumed run takes the learning rates it is given
        aux_optimizer.load_state_dict(state["aux_optimizer"])
        step = state["config"]["context_steps"]
        print(f"resumed at context step {step}")

    latents_path = args.run_dir / "latents.pt"
    if latents_path.exists():
        latents = torch.load(latents_path, weights_only=True)
    else:
        latents = cache_latents(model, args.data, args.crop, args.crops, args.seed)
        torch.save(latents, latents_path)
    with torch.no_grad():
        val = model.g_a(validation_images(args.val, 16, 512)).float()
    val_levels = torch.linspace(0, model.max_level, 5)

    def validate() -> list[float]:
        model.eval()
        with torch.no_grad():
            bits = [estimated_bits(model, val, lv.expand(len(val))).sum().item() for lv in val_levels]
        model.train()
        return bits

    baseline_path = args.run_dir / "val_start.json"
    if not baseline_path.exists():
        baseline_path.write_text(json.dumps(validate()))
    baseline = json.loads(baseline_path.read_text())

    def save() -> None:
        cfg = dict(parent["config"], arch=args.arch, context_steps=step,
                   context_crops=args.crops, context_init=str(args.init))
        atomic_save({"model": model.state_dict(), "step": parent["step"], "config": cfg,
                         "optimizer": optimizer.state_dict(),
                         "aux_optimizer": aux_optimizer.state_dict()}, checkpoint)

    model.train()
    generator = torch.Generator().manual_seed(args.seed + step)
    deadline = time.monotonic() + 60 * args.minutes
    log = (args.run_dir / "logs.jsonl").open("a")
    started, losses = time.monotonic(), []
    while time.monotonic() < deadline and (args.max_steps is None or step < args.max_steps):
        index = torch.randint(len(latents), (args.batch_size,), generator=generator)
        y = latents[index].float()
        level = torch.rand(args.batch_size, generator=generator) * model.max_level
        bits = estimated_bits(model, y, level)
        loss = bits.clamp_min(1.0).log().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in trained], 1.0)
        optimizer.step()
        aux = model.aux_loss()
        aux_optimizer.zero_grad(set_to_none=True)
        aux.backward()
        aux_optimizer.step()
        losses.append(loss.item())
        step += 1
        if step % args.log_every == 0:
            bits_now = validate()
            change = [100 * (b / b0 - 1) for b, b0 in zip(bits_now, baseline)]
            record = {"context_steps": step, "loss": sum(losses) / len(losses), "aux": aux.item(),
                      "val_bits_change_percent": [round(c, 2) for c in change],
                      "lr": [g["lr"] for g in optimizer.param_groups],
                      "seconds": round(time.monotonic() - started, 1)}
            print(json.dumps(record), flush=True)
            log.write(json.dumps(record) + "\n")
            log.flush()
            losses = []
            save()
    save()
    print(f"stopped at context step {step}; {checkpoint}")


if __name__ == "__main__":
    main()
