"""The vectorised SLF table parser agrees with the line parser, and mutated files never crash."""
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lattices import slf
from lattices.slf import parse_slf

WORDS = ["a", "b", "don't", "'bout", "!NULL", "<s>", "w(2)", "UPPER"]


def render(rng: random.Random, words_on_links: bool, uniform: bool) -> str:
    """A random forward SLF lattice; ``uniform``: every node (link) line has the same fields in
    the same order (the fast parser's layout); otherwise lines vary."""
    n = rng.randint(2, 9)
    links = [(s, d) for s in range(n) for d in range(s + 1, n) if rng.random() < 0.5 or d == s + 1]
    node_keys = ["I", "t"] + ([] if words_on_links else ["W"]) + (["v"] if rng.random() < 0.5 else [])
    link_keys = ["J", "S", "E", "a"] + (["W"] if words_on_links else []) + rng.sample(["l", "r", "p", "n"], rng.randint(0, 4))
    rng.shuffle(node_keys)
    rng.shuffle(link_keys)
    node_keys.remove("I")
    node_keys.insert(0, "I")  # node lines start with I=, link lines with J=
    link_keys.remove("J")
    link_keys.insert(0, "J")
    values = {"t": lambda i: f"{i * 0.1:.2f}", "W": lambda i: rng.choice(WORDS), "v": lambda i: "1",
              "a": lambda i: repr(rng.uniform(-50, 0)), "l": lambda i: f"{rng.uniform(-9, 0):.4f}",
              "r": lambda i: repr(rng.choice([0.0, -1.5])), "p": lambda i: "0.5", "n": lambda i: "-2.5"}
    sep = rng.choice([" ", "\t", "  "])
    lines = ["# a comment", "VERSION=1.0", f"UTTERANCE=u{rng.randint(0, 99)}", f"lmscale={rng.choice([1, 10])}",
             f"start=0 end={n - 1}", f"N={n}{sep}L={len(links)}"]
    for i in range(n):
        keys = node_keys if uniform else node_keys[: rng.randint(1, len(node_keys))]
        lines.append(rng.choice(["", " "]) * uniform + sep.join(f"{k}={i if k == 'I' else values[k](i)}" for k in keys))
    if rng.random() < 0.5:
        lines.append("# Link definitions")
    for j, (s, d) in enumerate(links):
        keys = link_keys if uniform else ["J", "S", "E"] + rng.sample(link_keys[3:], rng.randint(0, len(link_keys) - 3))
        vals = {"J": str(j), "S": str(s), "E": str(d)}
        lines.append(sep.join(f"{k}={vals[k] if k in vals else values[k](j)}" for k in keys))
    return "\n".join(lines) + rng.choice(["\n", "", "\n\n"])


def line_parser_result(text: str, monkeypatch, source: str = "x.slf"):
    with monkeypatch.context() as m:
        m.setattr(slf, "_parse_fast", lambda text, where: None)
        return parse_slf(text, source)


def same(a, b) -> None:
    assert (a.utt_id, a.num_nodes, a.start, a.finals, a.header) == (b.utt_id, b.num_nodes, b.start, b.finals, b.header)
    assert np.array_equal(a.src, b.src) and np.array_equal(a.dst, b.dst)
    assert np.array_equal(a.am, b.am) and np.array_equal(a.lm, b.lm)
    assert a.words == b.words
    for x, y in ((a.start_times, b.start_times), (a.end_times, b.end_times)):
        assert (x is None) == (y is None) and (x is None or np.array_equal(x, y))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), on_links=st.booleans(), uniform=st.booleans())
def test_fast_parser_equals_line_parser(seed, on_links, uniform, monkeypatch):
    text = render(random.Random(seed), on_links, uniform)
    if uniform:  # the usual layout must take the vectorised path
        assert slf._parse_fast(text, "x.slf") is not None
    same(parse_slf(text, "x.slf"), line_parser_result(text, monkeypatch))


def test_real_pocketsphinx_lattice_takes_the_fast_path(monkeypatch):
    from models.files import read_text

    path = "tests/data/lattices/pocketsphinx/2033-164914-0007.slf.gz"
    text = read_text(path)
    assert slf._parse_fast(text, path) is not None
    links = text[text.index("\nJ=") + 1:]
    assert slf._numeric_columns(links, *slf._layout(links, ("S", "E", "a"))) is not None  # no split into tokens
    same(parse_slf(text, path), line_parser_result(text, monkeypatch, path))


@pytest.mark.parametrize("text", [
    "N=2 L=1\nI=0 t=0.0 W='x a='y'\nI=1 t=1.0 W=b\nJ=0 S=0 E=1 a=-1\n",  # a quoted value: line parser
    "N=2 L=1\nI=0\nJ=0 S=0 E=1 a=-1\nI=1 W=b\n",  # node line after a link line
    "N=2 L=2\nI=0\nI=1 W=b\nJ=0 S=0 E=1 a=-1\nJ=1 S=0 E=1 a=-2 a=-3\n",  # a repeated field
    'N=2 L=1\nI=0\nI=1 W=b\nJ=0 S=0 E=1 "a=-1\n',  # a key that is not a name: the line parser reads a=-1
])
def test_unusual_layouts_fall_back_to_the_line_parser(text, monkeypatch):
    assert slf._parse_fast(text, "x.slf") is None
    same(parse_slf(text, "x.slf"), line_parser_result(text, monkeypatch))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_mutated_files_give_the_same_lattice_or_a_clear_error(seed, data, monkeypatch):
    text = render(random.Random(seed), data.draw(st.booleans()), True)
    chars = list(text)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(chars)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        ch = data.draw(st.sampled_from(list("=0123456789. \t\n-+e'\"#xIJSEWatl")))
        if op == "insert":
            chars.insert(pos, ch)
        elif chars:
            idx = min(pos, len(chars) - 1)
            if op == "delete":
                del chars[idx]
            else:
                chars[idx] = ch
    mutated = "".join(chars)
    results = []
    for parse in (lambda t: parse_slf(t, "x.slf"), lambda t: line_parser_result(t, monkeypatch)):
        try:
            results.append(parse(mutated))
        except ValueError as e:
            assert "x.slf" in str(e)
            results.append(None)
    if results[0] is not None and results[1] is not None:
        same(*results)
    else:
        assert results[0] is None and results[1] is None


NUMBER_CHARS = "0123456789.-+eE"


@settings(max_examples=2000, deadline=None)
@given(data=st.data())
def test_numeric_columns_equal_split_columns(data):
    """The byte-position reader of all-number tables gives the token reader's columns, or None
    (and for a clean table, whose values use no letter of a key, the columns)."""
    keys = data.draw(st.lists(st.sampled_from(["J", "S", "E", "a", "p", "e", "x1", "LINK"]), min_size=1, max_size=5, unique=True))
    rows = data.draw(st.lists(st.lists(st.text(alphabet=NUMBER_CHARS, max_size=5), min_size=len(keys), max_size=len(keys)),
                              min_size=1, max_size=5))
    lines = [data.draw(st.sampled_from([" ", "\t"])).join(f"{k}={v}" for k, v in zip(keys, row)) for row in rows]
    chars = list("\n".join(lines) + data.draw(st.sampled_from(["", "\n"])))
    mutations = data.draw(st.integers(0, 3))
    for _ in range(mutations):
        pos = data.draw(st.integers(0, len(chars)))
        chars.insert(pos, data.draw(st.sampled_from(list(NUMBER_CHARS + "= \t\n#'JSEapx"))))
    text = "".join(chars)
    layout = slf._layout(text, ("J", "S", "E", "a", "p", "e", "x1"))
    fast = slf._numeric_columns(text, *layout) if layout is not None else None
    if fast is not None:
        assert fast == slf._split_columns(text, *layout)
    if not mutations and not set("".join(keys)) & set("".join(v for row in rows for v in row)):
        assert fast is not None


def test_numeric_columns_refuse_what_they_cannot_read():
    layout = slf._layout("J=0 S=1\nJ=1 S=2\n", ("S",))
    assert slf._numeric_columns("J=0 S=1\nJ=1 S=2\n", *layout) == ["1\n2"]
    assert slf._numeric_columns("J=0\tS=\nJ=1 S=2", *layout) == ["\n2"]  # tabs, an empty value, no final newline
    for text in ("J=0 S=1\n J=1 S=2\n", "J=0 S=1\n\nJ=1 S=2\n", "J=0  S=1\nJ=1 S=2\n", "J=0 S=1\nJ=1 S=w\n",
                 "J=0 S=1\nS=1 J=2\n", "J=0 S=1\r\nJ=1 S=2\r\n", "J=0 S=1 \nJ=1 S=2\n", "J=0 S=1\nJ=1 S=2=3\n"):
        assert slf._numeric_columns(text, *slf._layout(text, ("S",))) is None, text
