"""``ugicm train``: the command-line face of training.loop (torch is imported only when it runs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import EXIT_FAILED
from .config import STAGE2_SESSIONS, TEACHERS


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("config", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--run-dir", help="Checkpoints and log.jsonl go here (default ~/.cache/ugicm/runs/default).")
@click.option("--train", "train_dirs", multiple=True, help="Training image folder (repeatable).")
@click.option("--val", help="Validation image folder.")
@click.option(
    "--arch",
    help="Architecture name: ugicm-hp-128-192, ugicm-hpr-128-192 (residual PCDM "
    "blocks), ugicm-hpa-128-192 (anchored, rate-aware PCDM and machine adapters); an -r10 "
    "suffix continues the rate ladder two points down (λ 0.00045, 0.00023); -tiny "
    "variants are for tests. --init from a smaller one's weights grows it.",
)
@click.option("--stage1-steps", type=int, help="Steps of stage 1 (all modules).")
@click.option("--stage2-steps", type=int, help="Steps of stage 2 (decoder only).")
@click.option("--batch-size", type=int)
@click.option("--crop", type=int, help="Training crop size in pixels.")
@click.option("--lr", type=float, help="Stage-1 learning rate.")
@click.option("--semantic-weight", type=float, help="Weight of L_sem against 255²·MSE.")
@click.option("--no-semantic", is_flag=True, help="Ablation: train beta=1 on MSE only.")
@click.option(
    "--stage2-sessions",
    type=click.Choice(STAGE2_SESSIONS),
    help="Stage-2 sessions: alternate (the paper), or human or machine alone "
    "(machine: anchored architectures only; it trains what the human decode does not use).",
)
@click.option("--teacher", type=click.Choice(TEACHERS), help="Semantic encoder.")
@click.option(
    "--teacher-weights",
    type=click.Path(exists=True, dir_okay=False),
    help="Local weights file of the teacher (CLIP: an open_clip state dict).",
)
@click.option("--device", help="auto, cpu, cuda, cuda:1 …")
@click.option("--threads", type=int, help="CPU threads.")
@click.option(
    "--data-workers",
    type=int,
    help="Processes computing object proposals ahead of the loop (0: in it; for spare cores).",
)
@click.option("--seed", type=int)
@click.option("--max-steps", type=int, help="Stop after this many more steps (the run can be resumed).")
@click.option("--fresh", is_flag=True, help="Ignore an existing checkpoint in the run directory.")
@click.option(
    "--init",
    type=click.Path(exists=True, dir_okay=False),
    help="Model state to start from when the run directory has no checkpoint: a "
    "checkpoint (.pt) or shipped weights (.safetensors).",
)
@click.option("--val-every", type=int)
@click.option("--checkpoint-every", type=int)
@click.option("--log-every", type=int)
def train(
    config,
    run_dir,
    train_dirs,
    val,
    arch,
    stage1_steps,
    stage2_steps,
    batch_size,
    crop,
    lr,
    semantic_weight,
    no_semantic,
    stage2_sessions,
    teacher,
    teacher_weights,
    device,
    threads,
    data_workers,
    seed,
    max_steps,
    fresh,
    init,
    val_every,
    checkpoint_every,
    log_every,
):
    """Train the codec with the two-stage UG-ICM schedule from folders of images.

    Settings come from CONFIG (TOML, see configs/default.toml), then from the options. A run
    resumes from RUN_DIR/last.pt when it exists; Ctrl-C saves a checkpoint and stops. Under
    torchrun the same command trains with DDP.
    """
    from .config import TrainConfig
    from .loop import Trainer

    overrides = dict(
        run_dir=run_dir,
        train=list(train_dirs) or None,
        val=val,
        arch=arch,
        stage1_steps=stage1_steps,
        stage2_steps=stage2_steps,
        batch_size=batch_size,
        crop=crop,
        lr=lr,
        semantic_weight=semantic_weight,
        teacher=teacher,
        teacher_weights=teacher_weights,
        device=device,
        threads=threads,
        data_workers=data_workers,
        seed=seed,
        val_every=val_every,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        init=init,
        semantic=False if no_semantic else None,
        stage2_sessions=stage2_sessions,
    )
    try:
        cfg = TrainConfig.load(config, overrides)
    except (ValueError, OSError) as e:
        raise click.UsageError(str(e)) from None

    show = _Display(cfg)
    try:
        trainer = Trainer(cfg, reporter=show.record)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        click.echo(f"ugicm: error: {e}", err=True)
        sys.exit(1)
    if fresh:
        trainer.checkpoint_path().unlink(missing_ok=True)
    show.line(trainer.start())
    show.start(trainer.step)
    try:
        step = trainer.run(max_steps=max_steps)
    finally:
        show.stop()
    show.line(f"stopped at step {step}; checkpoint {trainer.checkpoint_path()}")


class _Display:
    """A rich progress bar with the latest losses on a terminal; JSON lines when piped."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.progress = None
        self.tty = sys.stderr.isatty()

    def start(self, step: int) -> None:
        if not self.tty:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
        )
        self.task = self.progress.add_task("train", total=self.cfg.total_steps, completed=step, status="")
        self.progress.start()

    def record(self, r: dict) -> None:
        if self.progress is None:
            print(json.dumps(r), flush=True)
            return
        if r.get("kind") == "val":
            self.progress.console.print(
                "val " + json.dumps({k: v for k, v in r.items() if k.startswith("L")})
            )
            return
        status = (
            f"stage {r.get('stage')} loss {r.get('loss', 0):.3f} bpp {r.get('bpp', 0):.3f} "
            f"mse {r.get('mse', 0):.5f}"
        )
        if "sem" in r:
            status += f" sem {r['sem']:.3f}"
        self.progress.update(self.task, completed=r["step"], status=status)

    def line(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _fit_data_options(run_dir_help: str):
    """The options every fit of a frozen codec shares: where it keeps its run, what it trains
    and validates on."""

    def decorate(f):
        for option in reversed(
            (
                click.option(
                    "--run-dir",
                    required=True,
                    type=click.Path(file_okay=False, path_type=Path),
                    help=run_dir_help,
                ),
                click.option(
                    "--data",
                    multiple=True,
                    help="Training image folder (repeatable) [default: ../shared/data/train].",
                ),
                click.option(
                    "--val", default="../shared/data/val", show_default=True, help="Validation image folder."
                ),
            )
        ):
            f = option(f)
        return f

    return decorate


def _fit_schedule_options(f):
    """How long a fit runs, how often it reports, on how many threads."""
    for option in reversed(
        (
            click.option(
                "--minutes",
                type=float,
                default=60.0,
                show_default=True,
                help="Stop after this much wall time.",
            ),
            click.option("--max-steps", type=click.IntRange(1), help="Stop at this step."),
            click.option(
                "--log-every",
                type=click.IntRange(1),
                default=250,
                show_default=True,
                help="Validate, log and checkpoint every this many steps.",
            ),
            click.option(
                "--threads", type=click.IntRange(1), default=2, show_default=True, help="CPU threads."
            ),
        )
    ):
        f = option(f)
    return f


@click.command(
    "train-context", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.argument("init", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_fit_data_options("Checkpoint (last.pt), cached latents and logs.jsonl go here; a rerun resumes.")
@click.option(
    "--arch",
    default="ugicm-hpacg-128-192-r10",
    show_default=True,
    help="Architecture with a context to grow INIT into.",
)
@click.option(
    "--crops",
    type=click.IntRange(1),
    default=12000,
    show_default=True,
    help="Training crops whose latents are cached.",
)
@click.option("--crop", type=click.IntRange(64), default=256, show_default=True, help="Crop size in pixels.")
@click.option("--seed", type=int, default=1234, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option(
    "--lr", type=float, default=3e-4, show_default=True, help="Learning rate of the new context modules."
)
@click.option(
    "--pretrained-lr",
    type=float,
    default=5e-5,
    show_default=True,
    help="Learning rate of h_a, h_s and the z prior.",
)
@_fit_schedule_options
@click.option(
    "--graft-to",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write INIT with this run's fitted entropy model here, and stop (an ablation's decoders "
    "then code the same bits).",
)
def train_context(
    init,
    run_dir,
    arch,
    data,
    val,
    crops,
    crop,
    seed,
    batch_size,
    lr,
    pretrained_lr,
    minutes,
    max_steps,
    log_every,
    threads,
    graft_to,
):
    """Fit the entropy model (h_a, h_s, z prior, checkerboard context) to INIT's frozen transforms.

    INIT is a checkpoint or shipped weights; it grows into --arch and only its entropy model is
    trained, on the rate alone, from cached latents of training crops: a CPU stage after `ugicm
    train`. Export the result with scripts/export_weights.py RUN_DIR/last.pt.
    """
    from .context import ContextFit, ContextFitError, fit, graft_run

    settings = ContextFit(
        init=init,
        run_dir=run_dir,
        arch=arch,
        val=val,
        crops=crops,
        crop=crop,
        seed=seed,
        batch_size=batch_size,
        lr=lr,
        pretrained_lr=pretrained_lr,
        minutes=minutes,
        max_steps=max_steps,
        log_every=log_every,
        threads=threads,
    )
    if data:
        settings.data = list(data)
    try:
        if graft_to:
            graft_run(settings, graft_to)
        else:
            fit(settings)
    except (ContextFitError, FileNotFoundError) as e:
        click.echo(f"ugicm: error: {e}", err=True)
        sys.exit(EXIT_FAILED)


@click.command(
    "train-restore", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.argument("init", type=click.Path(exists=True, path_type=Path))
@_fit_data_options("Checkpoint (last.pt) and logs.jsonl go here; a rerun resumes.")
@click.option("--crop", type=click.IntRange(64), default=128, show_default=True, help="Crop size in pixels.")
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option(
    "--semantic-weight",
    type=click.FloatRange(0),
    default=0.5,
    show_default=True,
    help="Weight of L_sem against log(MSE); 0 trains on MSE alone.",
)
@click.option("--teacher", type=click.Choice(TEACHERS), default="efficientnet-lite0", show_default=True)
@_fit_schedule_options
@click.option("--seed", type=int, default=1234, show_default=True)
def train_restore(
    init,
    run_dir,
    data,
    val,
    crop,
    batch_size,
    lr,
    semantic_weight,
    teacher,
    minutes,
    max_steps,
    log_every,
    threads,
    seed,
):
    """Train the restore decode (--prefer restore) of INIT, everything else frozen.

    INIT is shipped weights (a .safetensors file or a weights directory) or a checkpoint. Clean
    training crops are degraded synthetically (noise, blur, low light, JPEG), encoded at random
    rates, and the restore decode of their latents is trained towards the clean crops. Export
    with scripts/export_weights.py --restore RUN_DIR/last.pt.
    """
    from .restore import RestoreFit, RestoreFitError, fit

    settings = RestoreFit(
        init=init,
        run_dir=run_dir,
        val=val,
        crop=crop,
        batch_size=batch_size,
        lr=lr,
        semantic_weight=semantic_weight,
        teacher=teacher,
        minutes=minutes,
        max_steps=max_steps,
        log_every=log_every,
        threads=threads,
        seed=seed,
    )
    if data:
        settings.data = list(data)
    try:
        fit(settings)
    except (RestoreFitError, FileNotFoundError) as e:
        click.echo(f"ugicm: error: {e}", err=True)
        sys.exit(EXIT_FAILED)
