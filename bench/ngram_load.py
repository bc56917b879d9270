"""Load time, memory and scoring throughput of the ARPA n-gram scorer on pocketsphinx's en-us 3-gram.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/ngram_load.py --arpa exp/ngram/en-us.arpa.gz

If ``--arpa`` does not exist it is first written from pocketsphinx's ``en-us.lm.bin`` (needs
``pocketsphinx==5.1.1``, the ``decode`` extra). pocketsphinx's own ARPA writer
(``NGramModel.write(path, NGramModel.str_to_type('arpa'))``) cannot be used for that: in 5.1.1 it
writes the 1- and 2-grams and then segfaults in the 3-grams (and without a live Python reference to
the ``LogMath`` passed to ``NGramModel`` it writes garbage numbers), so this script decodes the
trie binary itself (format of pocketsphinx ``src/lm/ngram_model_trie.c``, ``lm_trie.c``,
``lm_trie_quant.c``): unquantised 1-grams, 16-bit quantised probabilities/backoffs of the higher
orders, bit-packed word ids and child pointers, n-grams stored reversed (predicted word first). The "blank" n-grams pocketsphinx inserts for
missing prefixes are written as ordinary n-grams with their stored probability.

Prints one JSON object: n-gram counts per order, file size, load seconds, peak RSS (MiB, from
``resource.getrusage``; the process maximum, so it includes the conversion when that ran),
array memory of the loaded model, pairs/s for scoring ``--pairs`` random (history, word) pairs and,
with ``--check-pocketsphinx N``, the largest difference from pocketsphinx's own scores.
"""
import gzip
import json
import math
import os
import resource
import struct
import time
from typing import List, Tuple

import click
import numpy as np
import torch

from models.ngram import NgramLM

TRIE_HEADER = b"Trie Language Model"
LOG10_BASE = math.log10(1.0001)  # pocketsphinx's default LogMath base; the trie stores log_1.0001


def _required_bits(max_value: int) -> int:
    """Bits to store ``max_value`` (pocketsphinx ``bitarr_required_bits``)."""
    return max(int(max_value).bit_length(), 0)


def _read_bits(mem: np.ndarray, offsets: np.ndarray, bits: int) -> np.ndarray:
    """Little-endian bit fields of ``bits`` (<= 57) bits at bit ``offsets`` of byte array ``mem``."""
    byte = offsets >> 3
    value = np.zeros(len(offsets), dtype=np.uint64)
    for k in range(8):
        value |= mem[byte + k].astype(np.uint64) << np.uint64(8 * k)
    return ((value >> (offsets & 7).astype(np.uint64)) & np.uint64((1 << bits) - 1)).astype(np.int64)


def decode_trie_bin(path: str) -> Tuple[List[str], List[np.ndarray], List[np.ndarray], List[np.ndarray]]:
    """Decode a pocketsphinx trie LM (``*.lm.bin``).

    Returns:
        ``(words, ngrams, log10 probs, log10 backoffs)``: ``ngrams[m - 1]`` is ``[c_m, m]`` int64
        word indices (into ``words``), probabilities/backoffs ``[c_m]`` float64 (backoffs of the
        highest order are zeros).
    """
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(TRIE_HEADER):
        raise ValueError(f"{path}: not a pocketsphinx trie LM (header {data[:len(TRIE_HEADER)]!r})")
    pos = len(TRIE_HEADER)
    order = data[pos]
    counts = list(struct.unpack_from(f"<{order}I", data, pos + 1))
    pos += 1 + 4 * order
    tables: List[Tuple[np.ndarray, np.ndarray]] = []  # (prob centers, backoff centers) per order 2..n
    if order > 1:
        pos += 4  # former quantisation type
        for m in range(2, order + 1):
            prob = np.frombuffer(data, "<f4", 1 << 16, pos)
            pos += 4 << 16
            bo = np.zeros(1 << 16, dtype=np.float32)
            if m < order:
                bo = np.frombuffer(data, "<f4", 1 << 16, pos)
                pos += 4 << 16
            tables.append((prob, bo))
    uni = np.frombuffer(data, np.dtype([("prob", "<f4"), ("bo", "<f4"), ("next", "<u4")]), counts[0] + 1, pos)
    pos += 12 * (counts[0] + 1)
    word_bits = _required_bits(counts[0])
    mem = np.frombuffer(data, np.uint8, offset=pos)
    ngrams = [np.arange(counts[0], dtype=np.int64)[:, None]]
    probs = [uni["prob"][:-1].astype(np.float64) * LOG10_BASE]
    backoffs = [uni["bo"][:-1].astype(np.float64) * LOG10_BASE]
    parent_next = uni["next"].astype(np.int64)  # child ranges of the previous order (count + 1 entries)
    byte_start = 0
    for m in range(2, order + 1):
        allocated = counts[m - 1]  # the header count sizes the table ...
        n = int(parent_next[-1])  # ... but the parents' end pointer says how many entries are used
        if n > allocated:
            raise ValueError(f"{path}: {n} {m}-grams used, {allocated} allocated")
        middle = m < order
        next_bits = _required_bits(counts[m]) if middle else 0
        total_bits = word_bits + (32 if middle else 16) + next_bits
        block = mem[byte_start : byte_start + ((allocated + 1) * total_bits + 7) // 8 + 8]
        offsets = np.arange(n + 1, dtype=np.int64) * total_bits
        word = _read_bits(block, offsets[:-1], word_bits)
        parent = np.repeat(np.arange(len(parent_next) - 1), np.diff(parent_next))
        ngrams.append(np.concatenate([ngrams[-1][parent], word[:, None]], axis=1))
        prob_table, bo_table = tables[m - 2]
        if middle:
            probs.append(prob_table[_read_bits(block, offsets[:-1] + word_bits + 16, 16)] * LOG10_BASE)
            backoffs.append(bo_table[_read_bits(block, offsets[:-1] + word_bits, 16)] * LOG10_BASE)
            parent_next = _read_bits(block, offsets + word_bits + 32, next_bits)
            if np.any(np.diff(parent_next) < 0):
                raise ValueError(f"{path}: {m}-gram child pointers are not monotonic")
        else:
            probs.append(prob_table[_read_bits(block, offsets[:-1] + word_bits, 16)] * LOG10_BASE)
            backoffs.append(np.zeros(n))
        byte_start += ((1 + allocated) * total_bits + 7) // 8 + 8
    pos += byte_start
    (size,) = struct.unpack_from("<i", data, pos)
    words = data[pos + 4 : pos + 4 + size].decode("utf-8").split("\0")[:-1]
    assert len(words) == counts[0], f"{path}: {len(words)} word strings for {counts[0]} 1-grams"
    # The trie is keyed predicted word first, then the history backwards: reverse to ARPA order.
    return words, [np.ascontiguousarray(g[:, ::-1]) for g in ngrams], probs, backoffs


def write_arpa(path: str, words: List[str], ngrams: List[np.ndarray], probs: List[np.ndarray], backoffs: List[np.ndarray]) -> None:
    """Write an ARPA file (gzip if ``path`` ends in ``.gz``) atomically."""
    tmp = path + ".tmp"
    opener = gzip.open if path.endswith(".gz") else open
    names = np.array(words, dtype=object)
    with opener(tmp, "wt", encoding="utf-8") as f:  # type: ignore[operator]
        f.write("\\data\\\n" + "".join(f"ngram {m + 1}={len(g)}\n" for m, g in enumerate(ngrams)))
        for m, (grams, p, b) in enumerate(zip(ngrams, probs, backoffs), 1):
            f.write(f"\n\\{m}-grams:\n")
            text = names[grams[:, 0]]
            for j in range(1, m):
                text = text + " " + names[grams[:, j]]
            p_str = np.char.mod("%.6f", np.maximum(p, -99.0))
            if m < len(ngrams):
                f.writelines(f"{a}\t{t}\t{c}\n" for a, t, c in zip(p_str, text, np.char.mod("%.6f", b)))
            else:
                f.writelines(f"{a}\t{t}\n" for a, t in zip(p_str, text))
        f.write("\n\\end\\\n")
    os.replace(tmp, path)


def pocketsphinx_en_us_bin() -> str:
    import pocketsphinx

    return os.path.join(pocketsphinx.get_model_path(), "en-us", "en-us.lm.bin")


def pocketsphinx_max_diff(lm: NgramLM, num: int, rng: np.random.Generator) -> float:
    """Largest |ours - pocketsphinx| (natural log) of ``log P(w | h)`` over ``num`` random word triples.

    Checks the conversion and the scorer against pocketsphinx's own trie scoring of ``en-us.lm.bin``
    (``NGramModel.prob([w, h_k, ..., h_1])``: the word, then its history most recent first, in
    units of log base 1.0001). Words are drawn from the 1-grams (no specials), so most lookups back off.
    """
    import pocketsphinx

    log_math = pocketsphinx.LogMath()  # must outlive the model: pocketsphinx keeps a pointer to it
    ps_lm = pocketsphinx.NGramModel(pocketsphinx.Config(), log_math, pocketsphinx_en_us_bin())
    ordinary = np.array([i for w, i in lm.vocab.word2id.items() if not (w.startswith("<") and w.endswith(">"))])
    k = lm.order - 1
    triples = rng.choice(ordinary, size=(num, k + 1))
    ours = lm.score(torch.from_numpy(triples[:, :k]), torch.full((num,), k), torch.arange(num), torch.from_numpy(triples[:, k]))
    theirs = [ps_lm.prob(lm.vocab.decode(t[::-1])) * math.log(1.0001) for t in triples]
    return float(np.abs(ours.double().numpy() - np.array(theirs)).max())


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


@click.command(context_settings={"show_default": True})
@click.option("--arpa", default="exp/ngram/en-us.arpa.gz", help="ARPA file to load; written from pocketsphinx's en-us LM if missing.")
@click.option("--pairs", type=int, default=1_000_000, help="Random (history, word) pairs to score.")
@click.option("--unique-histories", type=int, default=100_000, help="Distinct histories among the pairs.")
@click.option("--history-len", type=int, default=4, help="Tokens per history (only the last order-1 are used).")
@click.option("--seed", type=int, default=0, help="Random seed.")
@click.option("--check-pocketsphinx", type=int, default=0, help="Compare this many random (history, word) scores with pocketsphinx's own.")
def main(arpa: str, pairs: int, unique_histories: int, history_len: int, seed: int, check_pocketsphinx: int) -> None:
    """Print a JSON object with counts, load time, memory and scoring throughput."""
    result = {"arpa": arpa}
    if not os.path.exists(arpa):
        t0 = time.perf_counter()
        source = pocketsphinx_en_us_bin()
        os.makedirs(os.path.dirname(os.path.abspath(arpa)), exist_ok=True)
        write_arpa(arpa, *decode_trie_bin(source))
        result.update(converted_from=source, convert_s=round(time.perf_counter() - t0, 2))
    result["file_mib"] = round(os.path.getsize(arpa) / 2**20, 1)
    rss_before = peak_rss_mib()
    t0 = time.perf_counter()
    lm = NgramLM.from_arpa(arpa)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    predictable = np.setdiff1d(np.arange(lm.vocab.size), lm.vocab.nonpredictable_ids())
    # Uniformly random words (so mostly backed-off lookups); full-length histories start with <s>.
    histories = rng.choice(predictable, size=(unique_histories, history_len))
    lengths = rng.integers(1, history_len + 1, size=unique_histories)
    histories[lengths == history_len, 0] = lm.vocab.bos_id
    inverse = rng.integers(0, unique_histories, size=pairs)
    words = rng.choice(predictable, size=pairs)
    args = [torch.from_numpy(a) for a in (histories, lengths, inverse, words)]
    lm.score(args[0], args[1], args[2][:1000], args[3][:1000])  # warm-up
    t0 = time.perf_counter()
    scores = lm.score(*args)
    score_s = time.perf_counter() - t0
    assert torch.isfinite(scores).all()
    result.update(
        order=lm.order,
        counts=lm.counts,
        total_ngrams=sum(lm.counts),
        vocab=len(lm.vocab),
        load_s=round(load_s, 2),
        peak_rss_mib_before_load=round(rss_before, 1),
        peak_rss_mib=round(peak_rss_mib(), 1),
        model_array_mib=round(lm.nbytes / 2**20, 1),
        pairs=pairs,
        unique_histories=unique_histories,
        score_s=round(score_s, 3),
        pairs_per_s=round(pairs / score_s),
        torch_threads=torch.get_num_threads(),
    )
    if check_pocketsphinx:
        result["pocketsphinx_pairs"] = check_pocketsphinx
        result["pocketsphinx_max_abs_diff_ln"] = pocketsphinx_max_diff(lm, check_pocketsphinx, rng)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
