"""``ugicm train-restore``: trains the restore decode (``--prefer restore``) on a frozen codec.

    ugicm train-restore weights/ --run-dir ~/.cache/ugicm/runs/restore --minutes 120
    python scripts/export_weights.py --restore ~/.cache/ugicm/runs/restore/last.pt

Self-supervised, as LL-ICM trains its codec for low-level vision, with this codec's teacher
standing in for LL-ICM's vision-language model: each clean training crop is degraded
synthetically (``degradations.random_degradation``: Gaussian and Poisson-Gaussian noise, defocus
and motion blur, low light, JPEG, and some crops left clean), the degraded crop is encoded at a
random rate level, and the restore decode of its latents is trained towards the clean crop:

    loss = mean over crops of log(MSE(restored, clean)) + w · L_sem(teacher(clean), teacher(restored))

log(MSE) weighs every rate level alike (a 0.1 dB gain at 0.1 bpp counts as much as one at 2 bpp;
a plain λ·MSE would leave the lowest rates, with errors 100× smaller in λ-weight, untrained), and
L_sem (the global and local scales of the stage-2 semantic loss) asks that the restored image
read to the teacher as the clean one does.

Everything but the restore decode's own weights (``UGICM.attach_restore``: an embedding of the
rate level and one block per synthesis scale) is frozen: the encoder, the entropy model and the
human and machine decodes, so existing files and their decodes stay bit-identical. The latents
are those the decoder will see (rounded as compress() rounds them). Interrupted runs resume from
``RUN_DIR/last.pt`` (SIGINT saves and stops); a JSON line per log interval goes to
``RUN_DIR/logs.jsonl``, with the validation PSNR of the restore and the human decodes of fixed
degraded validation crops against their clean originals.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..degradations import Degradation, image_rng, random_degradation
from ..hardware import bf16_is_fast
from ..models import build_model
from ..shared import resolve
from ..weights import training_state
from .data import RandomCrops, validation_images
from .loop import atomic_save
from .semantic import SemanticLoss
from .teachers import build_teacher

CHECKPOINT = "last.pt"
# The validation crops' degradations, one per crop in turn, and the rate levels they are coded at.
VALIDATION = (
    Degradation("noise", 15.0),
    Degradation("noise", 30.0),
    Degradation("defocus", 1.5),
    Degradation("defocus", 3.0),
    Degradation("motion", 9.0),
    Degradation("lowlight", 0.25),
    Degradation("jpeg", 20.0),
    Degradation("poisson", 30.0),
)
VALIDATION_LEVELS = (2.0, 5.0, 8.0)


class RestoreFitError(ValueError):
    """A fit that cannot start (one line for the user)."""


@dataclass
class RestoreFit:
    """The settings of one run (``ugicm train-restore``'s options)."""

    init: Path  # the codec whose restore decode is trained: checkpoint or shipped weights
    run_dir: Path
    data: list[str] = field(default_factory=lambda: ["../shared/data/train"])
    val: str = "../shared/data/val"
    crop: int = 128
    batch_size: int = 8
    seed: int = 1234
    lr: float = 2e-4
    semantic_weight: float = 0.5
    teacher: str = "efficientnet-lite0"
    minutes: float = 60.0
    max_steps: int | None = None
    log_every: int = 250  # validate, log and checkpoint
    threads: int = 2
    val_images: int = 16


def degrade_batch(crops: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, list[str]]:
    """Bx3xHxW floats in [0, 1] of the uint8 BxHxWx3 ``crops``, each degraded by a random draw."""
    out, labels = [], []
    for crop in crops:
        d = random_degradation(rng)
        out.append(d.apply(crop, rng))
        labels.append(d.kind)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div_(255), labels


def coded_latents(model, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """ŷ (after the inverse gain) of ``x`` at ``level``, rounded as compress() codes it."""
    with torch.no_grad():
        y = model.g_a(x).float()
        y_hat, _ = model.latent_forward(y, level)
        return y_hat * model.rate.inverse_gain(level)


def restored(model, y_hat: torch.Tensor, level: torch.Tensor, restore: bool = True) -> torch.Tensor:
    """The restore decode (or, with ``restore`` False, the human one) of latents ``y_hat``."""
    human = torch.zeros_like(level)
    embedding = model.conditioning(human, level)
    return model.g_s(y_hat, embedding, model.restore_conditioning(level) if restore else None)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = ((a.clamp(0, 1) * 255).round() / 255 - b).pow(2).mean((1, 2, 3))
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def fit(args: RestoreFit) -> int:
    """Run (or resume) until ``args.minutes`` or ``args.max_steps``; returns the step reached."""
    torch.set_num_threads(args.threads)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = args.run_dir / CHECKPOINT
    parent = training_state(args.init)
    model = build_model(parent["config"]["arch"])
    try:
        model.load_state_dict(parent["model"])
    except RuntimeError as e:
        arch = parent["config"]["arch"]
        raise RestoreFitError(f"{args.init} does not fit {arch}: {str(e).splitlines()[0]}") from None
    model.attach_restore().eval().requires_grad_(False)
    trained = [p for n, p in model.named_parameters() if n in model.restore_parameter_names()]
    for p in trained:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(trained, lr=args.lr)
    step = 0
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_restore_state(state["restore"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = args.lr
        step = state["step"]
        print(f"resumed at step {step}", flush=True)

    bf16 = bf16_is_fast("cpu")
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext
    semantic = None
    if args.semantic_weight:
        semantic = SemanticLoss(build_teacher(args.teacher), instances=0, seed=args.seed + step)
        semantic.requires_grad_(False)
    data = RandomCrops([resolve(d) for d in args.data], args.crop, args.batch_size, seed=args.seed + step)
    rng = np.random.default_rng([args.seed, step])

    clean = validation_images(resolve(args.val), args.val_images, 256)
    crops = (clean.permute(0, 2, 3, 1) * 255).round().byte().numpy()
    degraded = []
    for i, crop in enumerate(crops):
        d = VALIDATION[i % len(VALIDATION)]
        degraded.append(d.apply(crop, image_rng(args.seed, f"val{i}", d)))
    degraded = torch.from_numpy(np.stack(degraded)).permute(0, 3, 1, 2).float().div_(255)
    val_latents = [
        (lv, coded_latents(model, degraded, torch.full((len(clean),), lv))) for lv in VALIDATION_LEVELS
    ]

    def validate() -> dict:
        gains, human_db, restore_db = {}, [], []
        with torch.no_grad(), autocast():
            for lv, y_hat in val_latents:
                level = torch.full((len(clean),), lv)
                h = psnr(restored(model, y_hat, level, restore=False).float(), clean)
                r = psnr(restored(model, y_hat, level).float(), clean)
                human_db.append(h.mean().item())
                restore_db.append(r.mean().item())
                for i in range(len(clean)):
                    label = VALIDATION[i % len(VALIDATION)].label
                    gains.setdefault(label, []).append((r[i] - h[i]).item())
        return {
            "val_psnr_human": [round(v, 3) for v in human_db],
            "val_psnr_restore": [round(v, 3) for v in restore_db],
            "val_gain_db": {k: round(sum(v) / len(v), 3) for k, v in gains.items()},
        }

    def save() -> None:
        config = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(args).items()}
        config["arch"] = model.arch.name
        config["init_note"] = parent["config"].get("init", str(args.init))  # names the sha256
        atomic_save(
            {
                "restore": model.restore_state(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "config": config,
            },
            checkpoint,
        )

    if step == 0:
        record = {"step": 0, **validate()}
        print(json.dumps(record), flush=True)
        with (args.run_dir / "logs.jsonl").open("a") as log:
            log.write(json.dumps(record) + "\n")
    deadline = time.monotonic() + 60 * args.minutes
    started, losses, sems = time.monotonic(), [], []
    try:
        while time.monotonic() < deadline and (args.max_steps is None or step < args.max_steps):
            x, crops_now = data.next_batch()
            xd, _ = degrade_batch(crops_now, rng)
            level = torch.rand(args.batch_size) * model.max_level
            with autocast():
                y_hat = coded_latents(model, xd, level)
                x_r = restored(model, y_hat, level).float()
            mse = (x_r - x).pow(2).mean((1, 2, 3))
            loss = mse.clamp_min(1e-8).log().mean()
            if semantic is not None:
                with autocast():
                    sem = semantic(x, x_r)["sem"].float().mean()
                loss = loss + args.semantic_weight * sem
                sems.append(sem.item())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if step % args.log_every == 0:
                record = {
                    "step": step,
                    "loss": round(sum(losses) / len(losses), 4),
                    "sem": round(sum(sems) / len(sems), 4) if sems else None,
                    **validate(),
                    "seconds": round(time.monotonic() - started, 1),
                }
                print(json.dumps(record), flush=True)
                with (args.run_dir / "logs.jsonl").open("a") as log:
                    log.write(json.dumps(record) + "\n")
                losses, sems = [], []
                save()
    except KeyboardInterrupt:
        print("interrupted: saving", flush=True)
    save()
    print(f"stopped at step {step}; {checkpoint}", flush=True)
    return step
