"""A short fuzz run in the suite (the long one is scripts/fuzz_ugc.py): every mutated file ends in
an image or a documented error, never another exception."""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import GOLDEN
from ugicm_codec import container
from ugicm_codec.errors import FormatError
from ugicm_codec.fuzzing import MUTATIONS, mutate, outcome

SEEDS = [p.read_bytes() for p in sorted(GOLDEN.glob("tiny-*.ugc"))]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, len(SEEDS) - 1))
def test_mutated_files_end_in_documented_outcomes(tiny_codec, seed, which):
    kind, data = mutate(SEEDS[which], random.Random(seed))
    assert kind in MUTATIONS
    assert outcome(tiny_codec, data) in {"decoded", "FormatError", "LimitError", "ModelMismatchError"}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_parser_on_arbitrary_bytes(data):
    for candidate in (data, container.MAGIC + data):
        try:
            container.parse(candidate)
        except FormatError:
            pass
