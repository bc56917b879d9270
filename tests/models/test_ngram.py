"""ARPA n-gram scorer (models/ngram.py) against a brute-force dictionary scorer."""
import gzip
import itertools
import math
import random
from typing import Dict, List, Sequence, Tuple

import pytest
import torch

from models import ngram
from models.ngram import LN10, NgramLM
from models.scoring import pad_sequences

# Orders 1-3 with backoffs and <unk>; "a c" is only a context of the 3-gram "a c </s>" (a missing
# prefix), "c" and "</s>" have no backoff, "<s> a" backs off to "a".
SMALL = {
    1: ["-1.0 <unk> -0.3", "-99 <s> -0.5", "-0.7 </s>", "-0.6 a -0.2", "-0.8 b -0.1", "-0.9 c"],
    2: ["-0.3 <s> a -0.1", "-0.4 a b -0.2", "-0.5 b c", "-0.2 b </s> 0.05", "-0.45 <s> <unk> -0.25", "-0.35 c a"],
    3: ["-0.1 <s> a b", "-0.15 a c </s>", "-0.05 <s> <unk> b"],
}

Arpa = Dict[Tuple[str, ...], Tuple[float, float]]


def arpa_text(sections: Dict[int, List[str]], header: str = "") -> str:
    """An ARPA file with the right counts for ``sections`` (order -> n-gram lines)."""
    counts = "".join(f"ngram {m}={len(lines)}\n" for m, lines in sorted(sections.items()))
    body = "".join(f"\\{m}-grams:\n" + "".join(line + "\n" for line in lines) + "\n" for m, lines in sorted(sections.items()))
    return f"{header}\\data\\\n{counts}\n{body}\\end\\\n"


def write(tmp_path, text: str, name: str = "lm.arpa") -> str:
    path = str(tmp_path / name)
    if name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        (tmp_path / name).write_text(text, encoding="utf-8")
    return path


# --- brute-force reference -------------------------------------------------------------------------
def parse_reference(sections: Dict[int, List[str]]) -> Arpa:
    """n-gram tuple -> (log10 prob, log10 backoff), straight from the lines."""
    table: Arpa = {}
    for m, lines in sections.items():
        for line in lines:
            f = line.split()
            table[tuple(f[1 : m + 1])] = (float(f[0]), float(f[m + 1]) if len(f) > m + 1 else 0.0)
    return table


def ref_log10(table: Arpa, history: Sequence[str], word: str, order: int) -> float:
    """Recursive ARPA back-off: log10 P(word | last order-1 words of history)."""
    known = {g[0] for g in table if len(g) == 1}
    word, *history = [w if w in known else "<unk>" for w in [word, *history]]
    history = tuple(history)[max(0, len(history) - (order - 1)) :] if order > 1 else ()

    def rec(h: Tuple[str, ...]) -> float:
        if h + (word,) in table:
            return table[h + (word,)][0]
        return table.get(h, (0.0, 0.0))[1] + rec(h[1:])

    return rec(history)


def ref_sentence_ln(table: Arpa, words: Sequence[str], order: int) -> float:
    tokens = ["<s>"] + list(words) + ["</s>"]
    return LN10 * sum(ref_log10(table, tokens[:t], tokens[t], order) for t in range(1, len(tokens)))


def random_sections(order: int, words: Sequence[str], seed: int) -> Dict[int, List[str]]:
    """A random back-off model: every word a 1-gram, random subsets of higher orders (some
    n-grams without their prefix), random probabilities and backoffs."""
    rng = random.Random(seed)
    vocab = ["<s>", "</s>", "<unk>"] + list(words)
    sections = {1: [f"{-rng.uniform(0.1, 3):.4f} {w} {-rng.uniform(0, 1):.4f}" for w in vocab]}
    for m in range(2, order + 1):
        grams = set()
        for _ in range(6 * len(vocab)):
            gram = [rng.choice(vocab[2:]) for _ in range(m)]
            if rng.random() < 0.3:
                gram[0] = "<s>"
            gram[-1] = rng.choice(vocab[1:])  # never predict <s>
            grams.add(" ".join(gram))
        lines = []
        for gram in sorted(grams):
            bo = f" {rng.uniform(-1, 0.3):.4f}" if m < order and rng.random() < 0.7 else ""
            lines.append(f"{-rng.uniform(0.05, 2):.4f} {gram}{bo}")
        sections[m] = lines
    return sections


def all_pairs_check(lm: NgramLM, table: Arpa, max_history: int) -> None:
    """Every history (0..max_history words, optionally starting with <s>) x every word."""
    words = [w for w in lm.vocab.word2id if w not in ("<eps>", "<s>")]
    histories = [list(h) for n in range(max_history + 1) for h in itertools.product(words, repeat=n)]
    histories += [["<s>"] + h for h in histories if len(h) < max_history]
    hist, lengths = pad_sequences([lm.vocab.encode(h) for h in histories], 0)
    inverse = torch.arange(len(histories)).repeat_interleave(len(words))
    targets = torch.tensor(lm.vocab.encode(words)).repeat(len(histories))
    got = lm.score(hist, lengths, inverse, targets)
    assert got.dtype == torch.float32 and got.shape == inverse.shape
    want = torch.tensor([LN10 * ref_log10(table, h, w, lm.order) for h in histories for w in words], dtype=torch.float32)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def random_sentences(words: Sequence[str], seed: int, n: int = 200) -> List[List[str]]:
    rng = random.Random(seed)
    return [[rng.choice(list(words) + ["zzz-oov"]) for _ in range(rng.randint(0, 9))] for _ in range(n)]


# --- tests -----------------------------------------------------------------------------------------
@pytest.fixture
def small(tmp_path) -> Tuple[NgramLM, Arpa]:
    return NgramLM.from_arpa(write(tmp_path, arpa_text(SMALL, header="some preamble\n\n"))), parse_reference(SMALL)


def test_vocab_and_log10_to_ln(small):
    lm, _ = small
    assert lm.order == 3 and lm.counts == [6, 6, 3]
    assert lm.vocab.pairs()[:4] == [("<eps>", 0), ("<s>", 1), ("</s>", 2), ("<unk>", 3)]
    assert set(lm.vocab.word2id) == {"<eps>", "<s>", "</s>", "<unk>", "a", "b", "c"}
    a = lm.vocab.word2id["a"]
    assert lm.unigram_logp[a] == pytest.approx(-0.6 * math.log(10), rel=1e-6)
    assert lm.unigram_backoff[a] == pytest.approx(-0.2 * math.log(10), rel=1e-6)
    # P(a b c </s>) by hand in log10: -0.3 (<s> a), -0.1 (<s> a b), -0.2-0.5 (bo(a b), b c), 0-0.7 (c </s>)
    assert lm.sentence_log_prob(["a", "b", "c"]) == pytest.approx(-1.8 * math.log(10), rel=1e-6)


def test_all_pairs_match_brute_force(small):
    all_pairs_check(*small, max_history=3)  # histories longer than order-1 use their last 2 words


def test_sentences_match_brute_force(small):
    lm, table = small
    sentences = random_sentences(["a", "b", "c", "<unk>"], seed=0)
    got = lm.sentence_log_probs([lm.vocab.encode(s) for s in sentences])
    assert got.dtype == torch.float64 and got.shape == (len(sentences),)
    want = torch.tensor([ref_sentence_ln(table, s, 3) for s in sentences], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    assert lm.sentence_log_prob(["a", "zzz-oov", "b"]) == pytest.approx(lm.sentence_log_prob(["a", "<unk>", "b"]))


def test_score_semantics(small):
    lm, _ = small
    ids = lm.vocab.word2id
    # Padding after the length is ignored, lengths 0 mean unigram, pairs share histories via inverse.
    hist = torch.tensor([[ids["<s>"], ids["a"], 99], [ids["c"], ids["a"], ids["b"]], [7, 7, 7]])
    lengths = torch.tensor([2, 3, 0])
    inverse = torch.tensor([0, 0, 1, 2, 2])
    words = torch.tensor([ids["b"], ids["<s>"], ids["c"], ids["a"], ids["<eps>"]])
    got = lm.score(hist, lengths, inverse, words) / LN10
    torch.testing.assert_close(got[[0, 2, 3]], torch.tensor([-0.1, -0.7, -0.6]))
    assert got[1] == -math.inf and got[4] == -math.inf  # <s> and <eps> are never predicted
    with pytest.raises(ValueError, match="word ids"):
        lm.score(hist, lengths, inverse, torch.tensor([0, 0, 0, 0, lm.vocab.size]))
    with pytest.raises(ValueError, match="history ids"):
        lm.score(hist.masked_fill(hist == 99, -5), torch.tensor([3, 3, 0]), inverse, words)
    with pytest.raises(ValueError, match="lengths"):
        lm.score(hist, torch.tensor([4, 3, 0]), inverse, words)


def assert_same_model(a: NgramLM, b: NgramLM) -> None:
    assert a.vocab == b.vocab and a.counts == b.counts
    arrays_a = [a.unigram_logp, a.unigram_backoff] + a.keys + a.logp + a.backoff
    arrays_b = [b.unigram_logp, b.unigram_backoff] + b.keys + b.logp + b.backoff
    assert len(arrays_a) == len(arrays_b)
    for x, y in zip(arrays_a, arrays_b):
        torch.testing.assert_close(torch.from_numpy(x), torch.from_numpy(y), equal_nan=True)


def test_gzip_input_same_model(tmp_path, small):
    assert_same_model(NgramLM.from_arpa(write(tmp_path, arpa_text(SMALL), "lm.arpa.gz")), small[0])


def test_block_boundaries_and_crlf(tmp_path, monkeypatch, small):
    """Sections split over many read blocks, CRLF line ends and blank lines parse the same."""
    monkeypatch.setattr(ngram, "_BLOCK_BYTES", 7)
    text = arpa_text(SMALL).replace("-0.4 a b", "\n-0.4 a b").replace("\n", "\n\n", 1).replace("\n", "\r\n")
    assert_same_model(NgramLM.from_arpa(write(tmp_path, text)), small[0])


def test_missing_unk_gets_floor(tmp_path):
    sections = {1: ["-99 <s> -0.2", "-0.5 </s>", "-0.4 x"], 2: ["-0.1 <s> x", "-0.2 x </s>"]}
    lm = NgramLM.from_arpa(write(tmp_path, arpa_text(sections)))
    assert "<unk>" in lm.vocab
    # "<s> oov </s>": P(<unk> | <s>) = bo(<s>) + floor, P(</s> | <unk>) = P(</s>)
    assert lm.sentence_log_prob(["oov"]) == pytest.approx((-0.2 - 99 - 0.5) * LN10, rel=1e-6)
    lm5 = NgramLM.from_arpa(write(tmp_path, arpa_text(sections)), unk_log10_prob=-5)
    assert lm5.sentence_log_prob(["oov"]) == pytest.approx((-0.2 - 5 - 0.5) * LN10, rel=1e-6)


@pytest.mark.parametrize("order", [1, 2, 4, 5])
def test_random_models_match_brute_force(tmp_path, order):
    words = ["p", "q", "r", "s"]
    sections = random_sections(order, words, seed=order)
    lm = NgramLM.from_arpa(write(tmp_path, arpa_text(sections)))
    table = parse_reference(sections)
    assert lm.order == order
    all_pairs_check(lm, table, max_history=min(order, 3))
    sentences = random_sentences(words, seed=order)
    got = lm.sentence_log_probs([lm.vocab.encode(s) for s in sentences])
    want = torch.tensor([ref_sentence_ln(table, s, order) for s in sentences], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


GOOD = arpa_text({1: ["-1 <s> -0.1", "-0.5 </s>", "-0.4 x -0.2"], 2: ["-0.1 <s> x", "-0.2 x </s>"]})


@pytest.mark.parametrize(
    "text, message",
    [
        ("hello\n", r"no '\\data\\'"),
        (GOOD.replace("ngram 2=2", "ngram 2=3"), r"lm\.arpa:\d+: .*2-grams: section has 2 n-grams, header says 3"),
        (GOOD.replace("-0.4 x", "-0.4x x"), r"lm\.arpa:8: bad log-probability '-0\.4x'"),
        (GOOD.replace("x -0.2\n", "x 0.2.1\n"), r"lm\.arpa:8: bad backoff '0\.2\.1'"),
        (GOOD.replace("-0.2 x </s>", "-0.2 x </s> x -1"), r"lm\.arpa:12: expected a 2-gram line"),
        (GOOD.replace("-0.1 <s> x", "-0.1 x"), r"lm\.arpa:11: expected a 2-gram line"),
        (GOOD.replace("-0.2 x </s>", "-0.2 x y"), r"lm\.arpa:12: word 'y' of a 2-gram is not a 1-gram"),
        (GOOD.replace("\\end\\\n", ""), r"no '\\end\\'"),
        (GOOD.replace("\\2-grams:", "\\3-grams:"), r"lm\.arpa:10: expected '\\2-grams:'"),
        (GOOD.replace("-0.2 x </s>", "-0.2 <s> x"), r"2-gram '<s> x' listed twice"),
        (GOOD.replace("ngram 2=2", "ngram 2=two"), r"lm\.arpa:3: expected 'ngram 2=<count>'"),
    ],
)
@pytest.mark.parametrize("block_bytes", [ngram._BLOCK_BYTES, 5])
def test_malformed_files(tmp_path, monkeypatch, text, message, block_bytes):
    monkeypatch.setattr(ngram, "_BLOCK_BYTES", block_bytes)  # line numbers across read blocks
    with pytest.raises(ValueError, match=message):
        NgramLM.from_arpa(write(tmp_path, text))


def test_unk_is_found_in_any_case(tmp_path):
    text = arpa_text(SMALL)
    lower = NgramLM.from_arpa(write(tmp_path, text))
    upper = NgramLM.from_arpa(write(tmp_path, text.replace("<unk>", "<UNK>"), "caps.arpa"))
    assert upper.vocab.unk_id == lower.vocab.unk_id == 3 and upper.vocab.decode([3]) == ["<UNK>"]
    oov = ["never", "seen"]
    assert upper.sentence_log_prob(oov) == pytest.approx(lower.sentence_log_prob(oov))
    assert upper.sentence_log_prob(oov) > -100  # the file's <UNK> 1-gram, not the -99 log10 default
    named = NgramLM.from_arpa(write(tmp_path, text.replace("<unk>", "[oov]"), "named.arpa"), unk="[oov]")
    assert named.sentence_log_prob(oov) == pytest.approx(lower.sentence_log_prob(oov))
