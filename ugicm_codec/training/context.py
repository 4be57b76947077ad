"""``ugicm train-context``: fits a checkerboard-context entropy model to a trained codec's frozen
transforms, the stage after ``ugicm train`` that made the shipped weights' entropy model.

    ugicm train-context ~/.cache/ugicm/runs/gpu2/s2m.pt --run-dir ~/.cache/ugicm/runs/ctx
    python scripts/export_weights.py ~/.cache/ugicm/runs/ctx/last.pt
    ugicm train-context OTHER.pt --run-dir ~/.cache/ugicm/runs/ctx --graft-to OUT.pt

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

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..models import bits_per_pixel, build_model
from ..shared import resolve
from ..weights import training_state
from .data import RandomCrops, validation_images
from .loop import atomic_save

CACHE_BATCH = 16
DEFAULT_ARCH = "ugicm-hpacg-128-192-r10"


class ContextFitError(ValueError):
    """A fit that cannot start (one line for the user)."""


@dataclass
class ContextFit:
    """The settings of one fit (``ugicm train-context``'s options)."""

    init: Path  # checkpoint or shipped weights whose transforms are kept
    run_dir: Path
    arch: str = DEFAULT_ARCH
    data: list[str] = field(default_factory=lambda: ["../shared/data/train"])
    val: str = "../shared/data/val"
    crops: int = 12000  # training crops whose latents are cached
    crop: int = 256
    seed: int = 1234
    batch_size: int = 32
    lr: float = 3e-4  # for the new context modules
    pretrained_lr: float = 5e-5  # for h_a, h_s and the z prior
    minutes: float = 60.0  # stop after this much wall time
    max_steps: int | None = None  # stop at this context step (smoke runs)
    log_every: int = 250  # validate, log and checkpoint
    threads: int = 2


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
    return [
        (n, p) for n, p in model.named_parameters() if n.startswith(prefixes) and not n.endswith(".quantiles")
    ]


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
        raise ContextFitError("the two checkpoints have different analysis transforms")
    entropy = {n for n, _ in entropy_side(model)} | {
        k for k in state if k.startswith(("entropy_bottleneck.", "gaussian_conditional."))
    }
    state.update({k: v for k, v in fitted["model"].items() if k in entropy})
    model.load_state_dict(state)
    cfg = dict(
        other["config"], arch=arch, **{k: v for k, v in fitted["config"].items() if k.startswith("context_")}
    )
    atomic_save({"model": model.state_dict(), "step": other["step"], "config": cfg}, out)
    print(f"{out}: {len(entropy)} entropy-model tensors from the fitted run")


def graft_run(args: ContextFit, out: Path) -> None:
    """Write ``args.init`` with the entropy model fitted in ``args.run_dir`` to ``out``."""
    graft(training_state(args.run_dir / "last.pt"), training_state(args.init), args.arch, out)


def fit(args: ContextFit) -> int:
    """Run (or resume) the fit until ``args.minutes`` or ``args.max_steps``; returns the context step."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.run_dir.mkdir(parents=True, exist_ok=True)

    parent = training_state(args.init)
    model = build_model(args.arch)
    try:
        model.load_grown_state_dict(parent["model"])
    except (ValueError, KeyError) as e:  # a tensor of another shape, or one missing
        raise ContextFitError(f"{args.init} does not fit {args.arch}: {e}") from None
    model.requires_grad_(False)
    trained = entropy_side(model)
    for _, p in trained:
        p.requires_grad_(True)
    new = {n for n, _ in trained if n.startswith("context.")}
    optimizer = torch.optim.Adam(
        [
            {"params": [p for n, p in trained if n in new], "lr": args.lr},
            {"params": [p for n, p in trained if n not in new], "lr": args.pretrained_lr},
        ]
    )
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
        latents = cache_latents(model, [resolve(d) for d in args.data], args.crop, args.crops, args.seed)
        torch.save(latents, latents_path)
    with torch.no_grad():
        val = model.g_a(validation_images(resolve(args.val), 16, 512)).float()
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
        cfg = dict(
            parent["config"],
            arch=args.arch,
            context_steps=step,
            context_crops=args.crops,
            context_init=str(args.init),
        )
        atomic_save(
            {
                "model": model.state_dict(),
                "step": parent["step"],
                "config": cfg,
                "optimizer": optimizer.state_dict(),
                "aux_optimizer": aux_optimizer.state_dict(),
            },
            checkpoint,
        )

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
            record = {
                "context_steps": step,
                "loss": sum(losses) / len(losses),
                "aux": aux.item(),
                "val_bits_change_percent": [round(c, 2) for c in change],
                "lr": [g["lr"] for g in optimizer.param_groups],
                "seconds": round(time.monotonic() - started, 1),
            }
            print(json.dumps(record), flush=True)
            log.write(json.dumps(record) + "\n")
            log.flush()
            losses = []
            save()
    save()
    log.close()
    print(f"stopped at context step {step}; {checkpoint}")
    return step
