"""The checkerboard-context entropy model (entropy.CheckerboardContext), plain and in channel
groups: a grown model codes like its parent until trained; once trained, its one-stream bitstream
round-trips exactly and matches forward()'s rate. (Thread independence and hostile payloads: test_determinism and
test_codec, with the ``context_codec`` fixture.)"""

import numpy as np
import pytest
import torch

from conftest import CONTEXT_ARCH, GOLDEN, GROUPED_CONTEXT_ARCH, grown_context_model
from ugicm_codec.models import bits_per_pixel, build_model


def _x(image, size=(256, 256)):
    return torch.from_numpy(np.array(image.resize(size))).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize("arch", [CONTEXT_ARCH, GROUPED_CONTEXT_ARCH])
def test_a_grown_context_model_codes_like_its_parent(source_image, arch):
    parent, grown = grown_context_model(trained=False, arch=arch)
    x = _x(source_image)
    for level in (2.0, 0.9 * grown.max_level):  # the parent's ladder is the grown one's from 2 up
        a = parent.compress(x, level - 2)
        b = grown.compress(x, level)
        ya = parent.decompress_latent(a["strings"][0], a["strings"][1], a["z_shape"])
        yb = grown.decompress_latent(b["strings"][0], b["strings"][1], b["z_shape"])
        assert torch.equal(ya, yb) and ya.abs().sum() > 0


@pytest.mark.parametrize("arch", [CONTEXT_ARCH, GROUPED_CONTEXT_ARCH])
def test_a_trained_context_round_trips_and_matches_forward(source_image, arch):
    _, model = grown_context_model(trained=True, arch=arch)
    x = _x(source_image)
    level = 0.9 * model.max_level
    out = model.compress(x, level)
    y = model.analysis(x) * model.rate.gain(torch.tensor([level]))
    y_hat = model.decompress_latent(out["strings"][0], out["strings"][1], out["z_shape"])
    assert (y_hat - y).abs().max() <= 0.5 + 1e-4  # every symbol decoded as coded
    estimated = bits_per_pixel(model(x, torch.tensor([level]), torch.zeros(1))["likelihoods"], 1).item()
    actual = 8 * sum(len(s) for s in out["strings"])
    assert abs(actual - estimated) <= 0.05 * estimated + 64
    # The context changed the entropy parameters: the stream is not the context-free one.
    parent, plain = grown_context_model(trained=False)
    assert out["strings"][0] != plain.compress(x, level)["strings"][0]


def test_channel_groups_grow_from_a_trained_context_and_code_alike(source_image):
    """The grouped context grows from fitted plain-context weights (the shipped model's path):
    until its channel refinements train, every stream is the plain model's, byte for byte."""
    _, plain = grown_context_model(trained=True)
    grouped = build_model(GROUPED_CONTEXT_ARCH)
    assert (
        grouped.load_grown_state_dict(plain.state_dict()) == 3 * 2 * 6
    )  # 3 later groups, 2 halves, 6 tensors each
    grouped.update(force=True)
    grouped.eval()
    x = _x(source_image)
    for level in (1.0, 0.9 * grouped.max_level):
        a, b = plain.compress(x, level), grouped.compress(x, level)
        assert a["strings"] == b["strings"]
        y_hat = grouped.decompress_latent(b["strings"][0], b["strings"][1], b["z_shape"])
        assert torch.equal(y_hat, plain.decompress_latent(a["strings"][0], a["strings"][1], a["z_shape"]))


def test_channel_groups_must_cover_the_latent():
    from ugicm_codec.entropy import CheckerboardContext

    with pytest.raises(ValueError, match="do not add up to 24"):
        CheckerboardContext(24, groups=(4, 4, 8))


def test_fitting_a_context_to_frozen_transforms_resumes_and_grafts(tmp_path):
    """`ugicm train-context`: a smoke run that checkpoints, resumes, leaves the transforms
    untouched, and grafts its entropy model onto another checkpoint."""
    import json

    from click.testing import CliRunner

    from ugicm_codec.cli import main

    parent = build_model("ugicm-hpa-tiny-r10")
    cfg = {
        "arch": "ugicm-hpa-tiny-r10",
        "stage1_steps": 5,
        "batch_size": 2,
        "crop": 64,
        "train": ["x"],
        "teacher": "efficientnet-lite0",
        "semantic_weight": 1.0,
    }
    torch.save({"model": parent.state_dict(), "step": 10, "config": cfg}, tmp_path / "init.pt")
    run = tmp_path / "run"
    base = [
        "train-context",
        str(tmp_path / "init.pt"),
        "--run-dir",
        str(run),
        "--arch",
        CONTEXT_ARCH,
        "--data",
        str(GOLDEN / "source.png"),
        "--val",
        str(GOLDEN),
        "--crops",
        "8",
        "--crop",
        "64",
        "--batch-size",
        "4",
        "--log-every",
        "2",
        "--threads",
        "1",
    ]
    first = CliRunner().invoke(main, base + ["--max-steps", "2"])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(main, base + ["--max-steps", "4"])
    assert "resumed at context step 2" in second.output, second.output
    logs = [json.loads(line) for line in (run / "logs.jsonl").read_text().splitlines()]
    assert [r["context_steps"] for r in logs] == [2, 4]
    fitted = torch.load(run / "last.pt", weights_only=True)
    assert fitted["step"] == 10 and fitted["config"]["context_steps"] == 4
    assert fitted["model"]["context.refine.4.weight"].abs().sum() > 0  # trained away from zero
    for name, value in parent.state_dict().items():
        if name.startswith(("g_a.", "g_s.", "rate.")):
            assert torch.equal(fitted["model"][name], value), name
    graft = CliRunner().invoke(main, base + ["--graft-to", str(tmp_path / "graft.pt")])
    assert graft.exit_code == 0, graft.output
    grafted = torch.load(tmp_path / "graft.pt", weights_only=True)["model"]
    assert torch.equal(grafted["context.refine.4.weight"], fitted["model"]["context.refine.4.weight"])


def test_a_context_fit_refuses_weights_of_another_shape(tmp_path):
    """An INIT that does not fit --arch is one line and exit status 1, not a traceback."""
    from click.testing import CliRunner

    from ugicm_codec.cli import main

    torch.save({"model": {"g_a.0.weight": torch.zeros(1)}, "step": 0, "config": {}}, tmp_path / "init.pt")
    result = CliRunner().invoke(
        main,
        [
            "train-context",
            str(tmp_path / "init.pt"),
            "--run-dir",
            str(tmp_path / "run"),
            "--arch",
            CONTEXT_ARCH,
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 1 and "does not fit" in result.output, result.output
