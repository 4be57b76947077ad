"""The two-stage UG-ICM training schedule.

Stage 1 trains every module. Steps are grouped in sessions of ``session_steps``: a human session
(λ·MSE + rate at beta=0) is followed by a machine session (λ·(MSE + w·L_sem) + rate at beta=1).
Stage 2 freezes the encoder, hyperprior and entropy model and fine-tunes the decoder side only
(g_s, the PCDM and the inverse gains): MSE at beta=0, L_sem at beta=1.

The rate level is drawn uniformly from the continuous ladder for every sample, so one set of
weights learns every rate. No downstream model and no label is ever used.

Runs on one process, or under ``torchrun`` with DDP (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import ast
import json
import math
import os
import signal
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..errors import WeightsError
from ..hardware import bf16_is_fast
from ..models import UGICM, bits_per_pixel, build_model
from ..weights import training_state
from .config import TrainConfig
from .data import Batches, RandomCrops, validation_images
from .semantic import SemanticLoss
from .teachers import build_teacher

CHECKPOINT = "last.pt"


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _random_state(text: str) -> tuple:
    """A ``random.Random`` state from its repr (checkpoints load with ``weights_only``, which
    holds tensors and plain values but no pickled objects)."""
    version, internal, gauss_next = ast.literal_eval(text)
    return version, tuple(internal), gauss_next


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Trainer:
    def __init__(self, cfg: TrainConfig, reporter=None):
        self.cfg = cfg
        self.report = reporter or (lambda record: None)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = _pick_device(cfg.device)
        if self.world > 1:
            if self.device.type == "cuda":
                local = int(os.environ.get("LOCAL_RANK", "0"))
                self.device = torch.device("cuda", local)
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        torch.set_num_threads(cfg.threads)
        if self.device.type == "cuda":
            # Training shapes never change (one crop size, one batch size): cuDNN times its
            # convolution algorithms once per shape and keeps the fastest.
            torch.backends.cudnn.benchmark = True
        # Every random draw of a run comes from one of three generators, and a checkpoint stores
        # all three: torch's (rate levels, quantization noise), the data stream's (crops, flips)
        # and the semantic loss's (local crops). A resumed run then repeats the uninterrupted one.
        torch.manual_seed(cfg.seed + self.rank)

        self.run_dir = cfg.resolved_run_dir()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.model: UGICM = build_model(cfg.arch).to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.semantic = SemanticLoss(
            build_teacher(cfg.teacher, cfg.teacher_weights).to(
                self.device,
                memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format,
            ),
            instances=cfg.instances,
            seed=cfg.seed + self.rank,
            scale_range=tuple(cfg.semantic_scale_range),
        )
        self.data = RandomCrops(cfg.train, cfg.crop, cfg.batch_size, seed=cfg.seed + self.rank)
        self.batches = Batches(self.data, self.proposals_at, workers=cfg.data_workers)
        self.val = validation_images(cfg.val, cfg.val_images, 256) if cfg.val else None
        self.step = 0
        self.stage = 0
        self.grown = 0
        self._bf16 = self._use_bf16()
        self._build_optimizers()
        self._stop = False

    # ------------------------------------------------------------------ setup
    def _build_optimizers(self) -> None:
        stage2 = self.step >= self.cfg.stage1_steps
        self.stage = 2 if stage2 else 1
        m = self.model
        if stage2:
            frozen = [m.g_a, m.h_a, m.h_s, m.entropy_bottleneck, m.gaussian_conditional, m.context]
            for module in filter(None, frozen):
                module.requires_grad_(False)
            m.rate.log_gain.requires_grad_(False)
        # What beta=1 alone may move: with an anchored PCDM, exactly what cannot change the
        # human decode; otherwise the PCDM conditioning (shared by both decodes).
        self.machine_only_names = m.machine_only_parameter_names()
        self.pcdm_names = self.machine_only_names or m.preference_parameter_names(residual=False)
        if stage2 and self.cfg.stage2_sessions == "machine":
            if not self.machine_only_names:
                raise ValueError(
                    f"stage2_sessions='machine' needs an anchored architecture "
                    f"(ugicm-hpa-*), not {self.cfg.arch}"
                )
            for name, p in m.named_parameters():
                p.requires_grad_(name in self.machine_only_names)
        trainable = [
            (n, p) for n, p in m.named_parameters() if not n.endswith(".quantiles") and p.requires_grad
        ]
        aux = [p for n, p in m.named_parameters() if n.endswith(".quantiles")]
        if stage2:
            pcdm = self.pcdm_names
            groups = [
                {"params": [p for n, p in trainable if n not in pcdm], "lr_scale": 1.0},
                {
                    "params": [p for n, p in trainable if n in pcdm],
                    "lr_scale": self.cfg.stage2_preference_lr_scale,
                },
            ]
        else:
            groups = [{"params": [p for _, p in trainable], "lr_scale": 1.0}]
        self.optimizer = torch.optim.Adam(groups, lr=self.cfg.stage2_lr if stage2 else self.cfg.lr)
        self.aux_optimizer = torch.optim.Adam(aux, lr=1e-3)
        self.net = m
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                m,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        if self.cfg.compile:
            # Validation and checkpoints use self.model; only the training step goes through this.
            self.net = torch.compile(self.net)

    def _use_bf16(self) -> bool:
        setting = str(self.cfg.mixed_precision).lower()
        if setting in ("auto", ""):
            return bf16_is_fast(self.device.type)
        return setting in ("true", "1", "yes", "bf16")

    def _autocast(self):
        if not self._bf16:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def save(self) -> None:
        if self.rank != 0:
            return
        atomic_save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "aux_optimizer": self.aux_optimizer.state_dict(),
                "step": self.step,
                "config": self.cfg.as_dict(),
                "torch_rng": torch.get_rng_state(),
                "data_rng": repr(self.batches.state()),
                "semantic_rng": repr(self.semantic.rng.getstate()),
            },
            self.checkpoint_path(),
        )

    def resume(self) -> bool:
        path = self.checkpoint_path()
        if not path.exists():
            return False
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["config"]["arch"] != self.cfg.arch:
            raise ValueError(f"{path} holds a {state['config']['arch']} model, not {self.cfg.arch}")
        self.model.load_state_dict(state["model"])
        self.step = int(state["step"])
        self._build_optimizers()
        same_stage = (int(state["step"]) >= self.cfg.stage1_steps) == (self.stage == 2)
        if same_stage:
            try:
                self.optimizer.load_state_dict(state["optimizer"])
                self.aux_optimizer.load_state_dict(state["aux_optimizer"])
            except ValueError:
                pass  # parameter groups changed (a new stage): start the optimizer afresh
        torch.set_rng_state(state["torch_rng"].cpu())
        self.batches.set_state(_random_state(state["data_rng"]))
        if "semantic_rng" in state:  # checkpoints before it was stored draw those crops afresh
            self.semantic.rng.setstate(_random_state(state["semantic_rng"]))
        return True

    def initialise(self, path: str | Path) -> None:
        """Starts from a model state alone (a checkpoint's or the shipped weights'; no optimizer
        state), keeping its step count so the schedule (warm-up, stages) continues where that
        model was."""
        try:
            state = training_state(path, map_location=self.device)
        except WeightsError as e:
            raise ValueError(str(e)) from None
        # A larger architecture may grow from a smaller one's weights, but only by modules that
        # start as a no-op (PCDM, checkerboard context).
        try:
            self.grown = self.model.load_grown_state_dict(state["model"])
        except ValueError as e:
            raise ValueError(f"{path} does not fit {self.cfg.arch}: {e}") from None
        self.step = int(state.get("step", 0))
        self._build_optimizers()

    def start(self) -> str:
        """Resumes the run directory's checkpoint, else starts from ``init``, else from scratch."""
        if self.resume():
            return f"resumed from {self.checkpoint_path()} at step {self.step}"
        if self.cfg.init:
            self.initialise(self.cfg.init)
            grown = f" ({self.grown} new PCDM tensors)" if self.grown else ""
            return f"initialised from {self.cfg.init} at step {self.step}{grown}"
        return "started from scratch"

    # ------------------------------------------------------------------ one step
    def _losses(self, x: torch.Tensor, proposals: list | None, beta: float) -> dict:
        cfg, b = self.cfg, x.size(0)
        level = torch.rand(b, device=self.device) * self.model.max_level
        if cfg.level_focus:
            low, high, fraction = cfg.level_focus
            high = min(high, self.model.max_level)
            focused = low + torch.rand(b, device=self.device) * (high - low)
            level = torch.where(torch.rand(b, device=self.device) < fraction, focused, level)
        lmbda = self.model.lmbda(level)
        betas = torch.full((b,), float(beta), device=self.device)
        with self._autocast():
            out = self.net(x, level, betas)
        x_hat = out["x_hat"].float()
        mse = F.mse_loss(x_hat, x, reduction="none").flatten(1).mean(1)
        bpp = bits_per_pixel(out["likelihoods"], x.size(2) * x.size(3))
        terms = {"mse": mse.mean(), "bpp": bpp.mean()}
        machine = beta > 0
        if self.stage == 1:
            distortion = 255**2 * mse
            if machine and cfg.semantic:
                # Outside autocast: the teacher's depthwise convolutions gain nothing from bf16
                # on a CPU.
                sem = self.semantic(x, x_hat, proposals)
                terms.update({k: v.mean() for k, v in sem.items()})
                distortion = distortion + cfg.semantic_weight * sem["sem"]
            loss = (lmbda * distortion + bpp).mean()
        else:
            if machine and cfg.semantic:
                sem = self.semantic(x, x_hat, proposals)
                terms.update({k: v.mean() for k, v in sem.items()})
                # Unweighted by λ: the paper trains one model per rate, each with plain L_sem
                # here; λ-weighting would leave the low rates, where the machine decode has the
                # most to gain, with 1/100 of the weight of the high ones.
                loss = cfg.stage2_semantic_weight * sem["sem"]
                if cfg.stage2_machine_mse_weight:
                    loss = loss + cfg.stage2_machine_mse_weight * lmbda * 255**2 * mse
                loss = loss.mean()
            else:
                loss = (lmbda * 255**2 * mse).mean()
        terms["loss"] = loss
        return terms

    def session_beta(self, step: int | None = None) -> float:
        """Human (0) and machine (1) sessions alternate every ``session_steps`` steps, after the
        human-only warm-up; stage 2 may run one kind alone (``stage2_sessions``). Of this step,
        or of any other: the sessions follow the step count alone."""
        cfg, step = self.cfg, self.step if step is None else step
        stage2 = step >= cfg.stage1_steps
        if not stage2 and step < cfg.machine_warmup_steps:
            return 0.0
        if stage2 and cfg.stage2_sessions != "alternate":
            return float(cfg.stage2_sessions == "machine")
        return float((step // cfg.session_steps) % 2)

    def proposals_at(self, step: int) -> int:
        """How many object proposals per crop the semantic loss's instance scale needs at a step."""
        semantic = self.cfg.semantic and self.session_beta(step) > 0
        return self.cfg.instances if semantic else 0

    def learning_rate(self) -> float:
        if self.stage == 2:
            return self.cfg.stage2_lr
        passed = sum(self.step >= m for m in self.cfg.lr_milestones)
        return self.cfg.lr * 0.1**passed

    def train_step(self) -> dict:
        if self.step == self.cfg.stage1_steps and self.stage == 1:
            self._build_optimizers()
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate() * group.get("lr_scale", 1.0)
        self.net.train()
        x, _, proposals = self.batches.next(self.step)
        x = x.to(self.device)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        beta = self.session_beta()
        terms = self._losses(x, proposals, beta)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        # Adam leaves parameters without a gradient untouched (a zero gradient would still move
        # them by their momentum).
        if self.stage == 2 and beta > 0 and self.cfg.stage2_machine_pcdm_only:
            for name, p in self.model.named_parameters():
                if name not in self.pcdm_names:
                    p.grad = None
        elif beta == 0:
            for name, p in self.model.named_parameters():
                if name in self.machine_only_names:
                    p.grad = None
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad or float("inf"))
        # One non-finite gradient would poison every weight through Adam's moments: skip the
        # step instead, and count it in the log.
        finite = bool(torch.isfinite(norm))
        if finite:
            self.optimizer.step()
        terms["skipped"] = torch.tensor(0.0 if finite else 1.0)
        if self.stage == 1:
            aux = self.model.aux_loss()
            self.aux_optimizer.zero_grad(set_to_none=True)
            aux.backward()
            if torch.isfinite(aux):
                self.aux_optimizer.step()
            terms["aux"] = aux.detach()
        self.step += 1
        record = {k: float(v.detach()) for k, v in terms.items()}
        record.update(step=self.step, stage=self.stage, beta=beta, lr=self.optimizer.param_groups[0]["lr"])
        return record

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> dict:
        if self.val is None:
            return {}
        self.model.eval()
        x = self.val.to(self.device)
        record: dict = {"step": self.step, "kind": "val"}
        for level in (0.0, self.model.max_level / 2, self.model.max_level):
            lv = torch.full((x.size(0),), level, device=self.device)
            human = self.model(x, lv, torch.zeros_like(lv))
            machine = self.model(x, lv, torch.ones_like(lv))
            mse = F.mse_loss(human["x_hat"].clamp(0, 1), x).item()
            bpp = bits_per_pixel(human["likelihoods"], x.size(2) * x.size(3)).mean().item()
            sem_h = self.semantic.distance(x, human["x_hat"].clamp(0, 1)).mean().item()
            sem_m = self.semantic.distance(x, machine["x_hat"].clamp(0, 1)).mean().item()
            key = f"L{level:g}"
            record[key] = {
                "bpp": round(bpp, 4),
                "psnr": round(-10 * math.log10(max(mse, 1e-10)), 3),
                "sem_human": round(sem_h, 5),
                "sem_machine": round(sem_m, 5),
            }
        self.model.train()
        return record

    # ------------------------------------------------------------------ main loop
    def _log(self, record: dict) -> None:
        if self.rank != 0:
            return
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        self.report(record)

    def request_stop(self, *_):
        self._stop = True

    def run(self, max_steps: int | None = None) -> int:
        """Trains until the schedule ends, ``max_steps`` more steps were done, or a stop signal."""
        old = {s: signal.signal(s, self.request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        target = (
            self.cfg.total_steps if max_steps is None else min(self.cfg.total_steps, self.step + max_steps)
        )
        running: dict[str, float] = {}
        count, started = 0, time.time()
        try:
            while self.step < target and not self._stop:
                record = self.train_step()
                for k, v in record.items():
                    if isinstance(v, float) and k not in ("beta", "lr"):
                        running[k] = running.get(k, 0.0) + v
                count += 1
                if self.step % self.cfg.log_every == 0 or self.step == target:
                    avg = {k: round(v / count, 5) for k, v in running.items()}
                    avg.update(
                        step=self.step,
                        stage=self.stage,
                        kind="train",
                        lr=record["lr"],
                        sec_per_step=round((time.time() - started) / count, 3),
                    )
                    self._log(avg)
                    running, count, started = {}, 0, time.time()
                if self.step % self.cfg.checkpoint_every == 0:
                    self.save()
                if self.cfg.val_every and self.step % self.cfg.val_every == 0:
                    self._log(self.validate())
        finally:
            self.save()
            self.batches.close()
            for s, handler in old.items():
                signal.signal(s, handler)
            if self.world > 1 and dist.is_initialized():
                dist.destroy_process_group()
        return self.step
