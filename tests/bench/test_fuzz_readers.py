"""Every reader, fed random mutations of real inputs (bench/fuzz_readers.py's harness, driven by
hypothesis): never an exception other than a ValueError naming the file, never a per-file failure
that does not name it, and never more than a few seconds."""
import importlib.util
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "fuzz_readers.py")
_spec = importlib.util.spec_from_file_location("fuzz_readers", _PATH)
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)
READERS = fuzz.readers()


@pytest.mark.parametrize("name", sorted(READERS))
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_input_is_handled(name, seed):
    spec = READERS[name]
    rng = random.Random(seed)
    data = fuzz.mutate(rng.choice(spec["seeds"]), rng)
    result = fuzz.try_one(spec["read"], data, max_seconds=5.0)
    assert result["outcome"] == "handled", result["error"]


@pytest.mark.parametrize("name", sorted(READERS))
@settings(max_examples=20, deadline=None)
@given(data=st.binary(max_size=2000))
def test_random_bytes_are_handled(name, data):
    result = fuzz.try_one(READERS[name]["read"], data, max_seconds=5.0)
    assert result["outcome"] == "handled", result["error"]


def test_unmutated_seeds_read_cleanly(tmp_path):
    """The seeds are valid inputs: the lattice readers read them without a failure."""
    for name, spec in READERS.items():
        for i, seed in enumerate(spec["seeds"]):
            d = tmp_path / f"{name.replace(' ', '_')}-{i}"
            d.mkdir()
            out = spec["read"](seed, str(d))
            if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], list):
                assert out[1] == [] and len(out[0]) >= 1, (name, out[1][:1])
