"""parse_numbers: the strict column parser that the fast SLF and Kaldi-text readers trust."""
import threading
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lattices.textio import parse_numbers


@pytest.mark.parametrize("text, dtype, expected", [
    ("0\n17\n3", np.int64, [0, 17, 3]),
    ("-4\n+5\n0", np.int64, [-4, 5, 0]),
    ("-1.5\n2e3\n.25", np.float64, [-1.5, 2000.0, 0.25]),
])
def test_plain_numbers_are_read(text, dtype, expected):
    got = parse_numbers(text, len(expected), dtype)
    assert got.dtype == dtype and got.tolist() == expected


@pytest.mark.parametrize("text", [
    "0\n1\n-",  # numpy's integer reader takes a lone sign for 0
    "1\n+",
    "1\n--2\n3",
    "1\n2.0\n3",  # not an integer
    "1\n\n3",  # an empty value
    "1\n99999999999999999999\n3",  # beyond int64: numpy clamps it
    "1\n-99999999999999999999\n3",
    "1\n9007199254740992\n3",  # 2**53
])
def test_anything_but_a_plain_integer_is_refused(text):
    assert parse_numbers(text, 3, np.int64) is None


@given(st.lists(st.integers(-(2**53) + 1, 2**53 - 1), min_size=1, max_size=20))
def test_integers_read_back_exactly(values):
    got = parse_numbers("\n".join(map(str, values)), len(values), np.int64)
    assert got is not None and got.tolist() == values


def _read_as(tokens, convert, dtype) -> None:
    """The column is read exactly as ``convert`` reads each value, or refused."""
    try:
        expected = [convert(t) for t in tokens]
    except ValueError:
        expected = None
    got = parse_numbers("\n".join(tokens), len(tokens), dtype)
    if expected is None:
        assert got is None
    elif got is not None:
        assert got.tolist() == expected


@given(st.lists(st.text(alphabet="0123456789+-", min_size=0, max_size=4), min_size=1, max_size=6))
def test_integer_columns_agree_with_int(tokens):
    """Whatever the digits and signs, the column is read exactly as ``int()`` reads each value, or refused."""
    _read_as(tokens, int, np.int64)


@given(st.lists(st.text(alphabet="0123456789.eE+-", min_size=0, max_size=5), min_size=1, max_size=6))
def test_float_columns_agree_with_float(tokens):
    """Whatever the characters of a number, as ``float()`` reads it or refused: a value numpy
    reads only in part must not pass."""
    _read_as(tokens, float, np.float64)


def test_a_warning_in_another_thread_while_parsing_stays_a_warning():
    """Readers run in a worker thread (rescore.stream.prefetch). Warning filters are global, so a
    parser that turned warnings into errors made a warning the main thread raised meanwhile (e.g.
    the default-scale advice) a crash."""
    column = "\n".join(["1.5", "-2e3"] * 20000)
    done = threading.Event()

    def parse() -> None:
        for _ in range(50):
            assert parse_numbers(column, 40000, np.float64) is not None
        done.set()

    worker = threading.Thread(target=parse)
    with pytest.warns(UserWarning, match="meanwhile"):
        worker.start()
        try:
            while not done.is_set():
                warnings.warn("meanwhile", UserWarning)
        finally:
            worker.join()
