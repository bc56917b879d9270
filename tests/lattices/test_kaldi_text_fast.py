"""The vectorised Kaldi-text archive reader agrees with the line parser, mutated archives included."""
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lattices import kaldi_text
from lattices.kaldi_archive import word_lookup
from lattices.kaldi_text import parse_kaldi_text
from lattices.symbols import load_symbols
from models.files import read_text
from tests.lattices.test_reader_writer import THEANO

SYMS = load_symbols(str(THEANO / "words.txt"))
ID2WORD = {int(i): SYMS.get(i) for i in SYMS.ids}


def render(rng: random.Random, utts: int) -> str:
    blocks = []
    for u in range(utts):
        n = rng.randint(1, 7)
        lines = [f"utt{u}" + rng.choice(["", " "])]
        for s in range(n):
            for d in range(s + 1, n + 1):
                if rng.random() < 0.6 or d == s + 1:
                    tids = rng.choice(["", "1_2_3", "7"])
                    lines.append(f"{s} {d} {rng.choice([0, 1, 2, 5, 9])} {rng.uniform(0, 9):.3f},{rng.uniform(0, 900):.2f},{tids}")
        lines.append(f"{n} {rng.choice(['0,0,', '1.5,2.25,'])}" if rng.random() < 0.7 else str(n))
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks) + rng.choice(["", "\n"])


def by_line_parser(text):
    return kaldi_text._parse_archive_lines(text, "x.ark", ID2WORD, 0.01)


def same(a, b):
    la, fa = a
    lb, fb = b
    assert [(f.source, f.message) for f in fa] == [(f.source, f.message) for f in fb]
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        assert (x.utt_id, x.num_nodes, x.start, x.finals) == (y.utt_id, y.num_nodes, y.start, y.finals)
        assert np.array_equal(x.src, y.src) and np.array_equal(x.dst, y.dst)
        assert np.array_equal(x.am, y.am) and np.array_equal(x.lm, y.lm) and x.words == y.words


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), utts=st.integers(1, 5))
def test_fast_reader_equals_line_parser(seed, utts):
    text = render(random.Random(seed), utts)
    assert kaldi_text._parse_archive_fast(text, "x.ark", ID2WORD, 0.01) is not None
    same(parse_kaldi_text(text, "x.ark", word_lookup(SYMS)), by_line_parser(text))


def test_real_archive_takes_the_fast_path():
    text = read_text(str(THEANO / "lattice.lat"))
    assert kaldi_text._parse_archive_fast(text, "x.ark", ID2WORD, 0.01) is not None
    same(parse_kaldi_text(text, "x.ark", word_lookup(SYMS)), by_line_parser(text))


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_mutated_archives_read_the_same_as_the_line_parser(seed, data):
    chars = list(render(random.Random(seed), 3))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(chars) - 1))
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        ch = data.draw(st.sampled_from(list("0123456789.,_ \t\n-e")))
        if op == "insert":
            chars.insert(pos, ch)
        elif op == "delete":
            del chars[pos]
        else:
            chars[pos] = ch
    text = "".join(chars)
    same(parse_kaldi_text(text, "x.ark", word_lookup(SYMS)), by_line_parser(text))
