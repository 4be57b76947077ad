"""The entropy parameters are bit-exact whatever the summation order, thread count or batch;
decoded pixels do not depend on the thread count or on what else was decoded."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import GOLDEN
from ugicm_codec.layers import exact_forward
from ugicm_codec.models import build_model


def _hyper_input(model, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = model.arch.N
    return torch.randint(-20, 21, (batch, n, 5, 7), generator=g).float() + torch.rand(1, n, 1, 1, generator=g)


def test_exact_hyper_synthesis_is_order_independent():
    torch.manual_seed(0)
    model = build_model("ugicm-hp-128-192").eval()
    z = _hyper_input(model)
    reference = exact_forward(model.h_s, z)
    # Permuting the input channels (and the weights to match) reorders every sum of the first layer.
    perm = torch.randperm(z.size(1))
    permuted = build_model("ugicm-hp-128-192").eval()
    permuted.load_state_dict(model.state_dict())
    with torch.no_grad():
        permuted.h_s[0].weight.copy_(model.h_s[0].weight[perm])
    assert torch.equal(exact_forward(permuted.h_s, z[:, perm]), reference)
    # Float32 evaluation of the same network is not order independent (why the exact path exists).
    with torch.no_grad():
        f32 = model.h_s(z)
        f32_perm = permuted.h_s(z[:, perm])
    assert f32.dtype == torch.float32 and not torch.equal(f32, f32_perm)


def test_exact_hyper_synthesis_ignores_threads_and_batching():
    torch.manual_seed(1)
    model = build_model("ugicm-hp-128-192").eval()
    z = _hyper_input(model, batch=3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = exact_forward(model.h_s, z[1:2])
        torch.set_num_threads(2)
        two = exact_forward(model.h_s, z[1:2])
        batched = exact_forward(model.h_s, z)[1:2]
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two) and torch.equal(one, batched)


def test_decode_is_independent_of_threads_and_order(tiny_codec):
    data = (GOLDEN / "tiny-q90.ugc").read_bytes()
    other = (GOLDEN / "tiny-q30.ugc").read_bytes()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = np.asarray(tiny_codec.decode(data, "machine"))
        torch.set_num_threads(2)
        tiny_codec.decode(other, "human")
        after = np.asarray(tiny_codec.decode(data, "machine"))
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(alone, after)


@pytest.mark.parametrize(
    "codec_fixture, size",
    [("default_codec", None), ("default_codec", (768, 512)), ("context_codec", (200, 136))],
)
def test_decode_thread_independent(codec_fixture, source_image, size, request):
    # Kodak-sized: two synthesis tiles. With IGDN's 1x1 convolution, one pixel of the small image
    # differed. The context model's exact two-pass parse, over several entropy tiles, too.
    default_codec = request.getfixturevalue(codec_fixture)
    image = source_image if size is None else source_image.resize(size, Image.BICUBIC)
    data = default_codec.encode(image, quality=50)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = np.asarray(default_codec.decode(data, "human"))
        torch.set_num_threads(2)
        two = np.asarray(default_codec.decode(data, "human"))
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(one, two)


def test_scale_indexes_match_compressai(tiny_codec):
    """entropy_parameters' binary search gives CompressAI's build_indexes integers, edges included."""
    gc = tiny_codec.model.gaussian_conditional
    table = gc.scale_table.float()
    torch.manual_seed(0)
    scales = torch.cat(
        [
            torch.exp(torch.randn(50000) * 3),
            table,
            table * (1 + 1e-7),
            table * (1 - 1e-7),
            torch.tensor([0.0, -1.0, 1e9]),
        ]
    ).reshape(1, 1, -1, 1)
    z_hat = torch.zeros(1, tiny_codec.model.arch.N, 1, 1)
    model, exact = tiny_codec.model, tiny_codec.model.exact_h_s
    try:  # route known scales through entropy_parameters' own index computation
        model.exact_h_s = lambda _: torch.cat([scales, torch.zeros_like(scales)], 1).double()
        indexes, _ = model.entropy_parameters(z_hat)
    finally:
        model.exact_h_s = exact
    assert torch.equal(indexes, gc.build_indexes(scales))
