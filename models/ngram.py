"""Back-off n-gram language models read from ARPA files, scored in batches (numpy, no k2).

:class:`NgramLM` stores an order-n ARPA model as a trie in flat arrays:

- order 1 is dense over word ids: ``log P(w)`` and ``backoff(w)``, ``[V]`` float32 each;
- order m >= 2 holds sorted int64 ``keys = node(context) * V + word`` where ``node(context)`` is
  the row of the (m-1)-word context in order m-1's table (its word id for m = 2), with float32
  ``log P`` and ``backoff`` aligned with the keys (no backoffs for the highest order).

A batch of lookups is one ``np.searchsorted`` per order. All numbers are natural logs (ARPA's
log10 values times ``ln 10``). Scoring follows standard ARPA back-off semantics::

    log P(w | h) = logp(h w)                        if the n-gram "h w" is listed
                 = backoff(h) + log P(w | h[1:])    otherwise (backoff 0 when h is not listed)

``<s>`` is a context only (predicting it, or ``<eps>``, gives ``-inf``); words unknown to the
model are scored as ``<unk>`` (callers map them to ``vocab.unk_id``, e.g. with ``vocab.encode``). When the ARPA file has no ``<unk>`` 1-gram, ``<unk>`` is added with
log10 probability ``unk_log10_prob`` (default -99, SRILM's "log 0").

An n-gram whose context is not listed itself (e.g. "a b c" without "a b") is legal ARPA: the
context is stored as a placeholder node (no probability, backoff 0) so the trie stays complete.
"""
import math
import re
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .files import open_bytes
from .vocab import BOS, EOS, EPS, UNK, Vocabulary

LN10 = math.log(10.0)
_BLOCK_BYTES = 1 << 22  # bytes read and parsed at once (bounds the parser's extra memory)
_HEADER = re.compile(rb"^\\[^\n]*", re.M)  # "\data\", "\1-grams:", "\end\" lines


def _segments(path: str) -> Iterator[Tuple[int, bytes, bool]]:
    """Split a file into header lines (starting with a backslash) and the text between them.

    Yields:
        ``(line number of the segment's first line, bytes, is_header)``; text segments end at line
        boundaries and are at most about ``_BLOCK_BYTES`` long.
    """
    lineno = 1
    try:
        with open_bytes(path) as f:
            while True:
                block = f.read(_BLOCK_BYTES)
                if not block:
                    return
                if not block.endswith(b"\n"):
                    block += f.readline()
                pos = 0
                for match in _HEADER.finditer(block):
                    if match.start() > pos:
                        yield lineno, block[pos : match.start()], False
                        lineno += block.count(b"\n", pos, match.start())
                    yield lineno, match.group().strip(), True
                    lineno += 1
                    pos = match.end() + 1
                if pos < len(block):
                    yield lineno, block[pos:], False
                    lineno += block.count(b"\n", pos)
    except (OSError, EOFError) as e:  # e.g. a corrupt .gz
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path}: cannot read: {e}") from e


def _show(text: bytes) -> str:
    return repr(text.decode("utf-8", errors="replace").strip())


_FLOAT32_MAX = float(np.finfo(np.float32).max)  # values are stored as float32: larger ones would turn into inf


def _floats(values: np.ndarray, linenos: Callable[[int], int], path: str, what: str) -> np.ndarray:
    """Parse number tokens to float64; ``ValueError`` naming the file and line of the first bad one
    (not a number, NaN, +inf, or beyond float32; ``-inf``, "log 0", is allowed).

    Args:
        values: ``[c]`` object array of ``bytes`` tokens.
        linenos: maps an index into ``values`` to its 1-based line number in the file.
        what: what the numbers are, for the message ("log-probability", "backoff").
    """
    try:
        out = np.fromiter(map(float, values), dtype=np.float64, count=len(values))
        bad = np.flatnonzero(np.isnan(out) | (out == np.inf) | (np.isfinite(out) & (np.abs(out) > _FLOAT32_MAX)))
    except ValueError:
        bad = [i for i, v in enumerate(values) if not _is_number(v)]
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"{path}:{linenos(i)}: bad {what} {_show(values[i])}")
    return out


def _is_number(token: bytes) -> bool:
    try:
        value = float(token)
    except ValueError:
        return False
    return not (math.isnan(value) or value == math.inf)


class _Section:
    """The parsed n-grams of one ``\\m-grams:`` section: word ids ``[c, m]`` and log10 numbers."""

    def __init__(self, order: int) -> None:
        self.order = order
        self.words: List[np.ndarray] = []  # int32 [c_i, m] vocabulary ids per text segment
        self.logp: List[np.ndarray] = []
        self.backoff: List[np.ndarray] = []
        self.unigrams: List[bytes] = []  # the 1-gram section's words
        self.count = 0

    def parse(self, text: bytes, first_lineno: int, word2id: Optional[Dict[bytes, int]], path: str) -> None:
        """Parse n-gram lines (blank lines allowed) whose first line is line ``first_lineno``.

        Vectorised: one ``bytes.split`` for the tokens, numpy for the tokens per line. ``word2id``
        is ``None`` for the 1-gram section (its words are collected).
        """
        m = self.order
        raw = np.frombuffer(text, dtype=np.uint8)
        space = (raw == 32) | ((raw >= 9) & (raw <= 13))  # bytes.split()'s ASCII whitespace
        newlines = np.flatnonzero(raw == 10)
        starts = np.flatnonzero(~space & np.concatenate([[True], space[:-1]]))
        tokens = np.empty(len(starts), dtype=object)
        tokens[:] = text.split()
        num_lines = len(newlines) + int(len(raw) > 0 and raw[-1] != 10)
        per_line = np.bincount(np.searchsorted(newlines, starts), minlength=num_lines)
        bad = np.flatnonzero((per_line > 0) & ((per_line < m + 1) | (per_line > m + 2)))
        if len(bad):
            i = int(bad[0])
            line = text[newlines[i - 1] + 1 if i else 0 : newlines[i] if i < len(newlines) else len(text)]
            raise ValueError(
                f"{path}:{first_lineno + i}: expected a {m}-gram line 'logprob {' '.join(['word'] * m)} [backoff]', "
                f"got {_show(line)}"
            )
        kept = np.flatnonzero(per_line > 0)
        first = (np.cumsum(per_line) - per_line)[kept]  # token index of each line's log-prob

        def lineno(i: int) -> int:
            return first_lineno + int(kept[i])

        self.logp.append(_floats(tokens[first], lineno, path, "log-probability").astype(np.float32))
        has_bo = np.flatnonzero(per_line[kept] == m + 2)
        backoff = np.zeros(len(kept), dtype=np.float32)
        backoff[has_bo] = _floats(tokens[first[has_bo] + m + 1], lambda j: lineno(int(has_bo[j])), path, "backoff")
        self.backoff.append(backoff)
        words = tokens[first[:, None] + 1 + np.arange(m)[None, :]]
        if word2id is None:
            self.unigrams.extend(words[:, 0].tolist())
        else:
            ids = list(map(word2id.get, words.ravel().tolist()))
            try:
                self.words.append(np.array(ids, dtype=np.int32).reshape(len(kept), m))
            except TypeError:  # a None: a word that is not a 1-gram
                i = ids.index(None)
                raise ValueError(f"{path}:{lineno(i // m)}: word {_show(words.ravel()[i])} of a {m}-gram is not a 1-gram") from None
        self.count += len(kept)

    def arrays(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(word ids [c, m] int32, log10 probs [c] float32, log10 backoffs [c] float32)``; frees the parts."""

        def cat(parts: List[np.ndarray], empty: np.ndarray) -> np.ndarray:
            return np.concatenate(parts) if parts else empty

        empty = np.zeros(0, dtype=np.float32)
        out = cat(self.words, np.zeros((0, self.order), dtype=np.int32)), cat(self.logp, empty), cat(self.backoff, empty)
        self.words, self.logp, self.backoff = [], [], []
        return out


def _parse_counts(text: bytes, first_lineno: int, counts: List[int], path: str) -> None:
    """Append the ``ngram m=<count>`` lines of ``text`` to ``counts``."""
    for i, line in enumerate(text.split(b"\n")):
        fields = line.replace(b"=", b" ").split()
        if not fields:
            continue
        m = len(counts) + 1
        if len(fields) != 3 or fields[0] != b"ngram" or fields[1] != str(m).encode() or not fields[2].isdigit():
            raise ValueError(f"{path}:{first_lineno + i}: expected 'ngram {m}=<count>', got {_show(line)}")
        counts.append(int(fields[2]))


def _read_arpa(path: str, unk: Optional[str]) -> Tuple[List[int], List[str], np.ndarray, np.ndarray, List[_Section]]:
    """Parse an ARPA file; vocabulary ids are ``<eps>``, ``<s>``, ``</s>``, the unknown word, then
    the other 1-grams in file order. ``unk`` None: the file's 1-gram spelled ``<unk>`` in any case
    (``<UNK>``, ``<Unk>``), else ``<unk>``.

    Returns:
        ``(declared counts per order, words by id, 1-gram log10 probs [V] (NaN: not in the file),
        1-gram log10 backoffs [V], sections for orders 2..n holding vocabulary ids)``.
    """
    segments = _segments(path)
    lineno = 0
    for lineno, text, is_header in segments:  # skip anything before \data\
        if is_header and text == b"\\data\\":
            break
    else:
        raise ValueError(f"{path}: no '\\data\\' line: not an ARPA file")
    counts: List[int] = []
    section: Optional[_Section] = None
    sections: List[_Section] = []
    word2id: Optional[Dict[bytes, int]] = None
    words: List[str] = []
    unigram_logp = unigram_backoff = np.zeros(0)

    def finish(section: _Section, at_line: int) -> None:
        nonlocal word2id, words, unigram_logp, unigram_backoff
        m = section.order
        if section.count != counts[m - 1]:
            raise ValueError(f"{path}:{at_line}: \\{m}-grams: section has {section.count} n-grams, header says {counts[m - 1]}")
        if m > 1:
            sections.append(section)
            return
        seen: Dict[bytes, int] = {}
        for i, w in enumerate(section.unigrams):
            if seen.setdefault(w, i) != i:
                raise ValueError(f"{path}: 1-gram {_show(w)} listed twice")
        try:
            file_words = [w.decode("utf-8") for w in section.unigrams]
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: 1-grams are not UTF-8: {e}") from None
        unk_word = unk if unk is not None else next((w for w in file_words if w.lower() == UNK), UNK)
        specials = [EPS, BOS, EOS, unk_word]
        words = specials + [w for w in file_words if w not in specials]
        word2id = {w.encode("utf-8"): i for i, w in enumerate(words)}
        rows = np.fromiter(map(word2id.__getitem__, section.unigrams), dtype=np.int64, count=len(section.unigrams))
        _, logp, backoff = section.arrays()
        unigram_logp = np.full(len(words), np.nan)
        unigram_logp[rows] = logp
        unigram_backoff = np.zeros(len(words))
        unigram_backoff[rows] = backoff

    for lineno, text, is_header in segments:
        if not is_header:
            if section is not None:
                section.parse(text, lineno, word2id, path)
            else:  # between \data\ and \1-grams:
                _parse_counts(text, lineno, counts, path)
            continue
        if not counts:
            raise ValueError(f"{path}:{lineno}: no 'ngram m=<count>' lines after '\\data\\'")
        m = section.order + 1 if section is not None else 1
        if section is not None:
            finish(section, lineno)
        if m > len(counts):
            if text != b"\\end\\":
                raise ValueError(f"{path}:{lineno}: expected '\\end\\' after the {m - 1}-grams, got {_show(text)}")
            return counts, words, unigram_logp, unigram_backoff, sections
        if text != f"\\{m}-grams:".encode():
            raise ValueError(f"{path}:{lineno}: expected '\\{m}-grams:', got {_show(text)}")
        section = _Section(m)
    if section is not None:
        finish(section, lineno)
    raise ValueError(f"{path}: unexpected end of file (no '\\end\\')")


class NgramLM:
    """A back-off n-gram LM in flat sorted arrays (see the module docstring).

    Build with :meth:`from_arpa`. Attributes: ``order`` (n), ``vocab`` (ids of every 1-gram word
    plus ``<eps>`` 0, ``<s>``, ``</s>``, ``<unk>``), ``counts`` (n-grams per order as declared in
    the file).
    """

    def __init__(
        self,
        vocab: Vocabulary,
        unigram_logp: np.ndarray,
        unigram_backoff: np.ndarray,
        keys: List[np.ndarray],
        logp: List[np.ndarray],
        backoff: List[np.ndarray],
        counts: List[int],
    ) -> None:
        """Low-level constructor; see :meth:`from_arpa`.

        Args:
            unigram_logp, unigram_backoff: ``[V]`` float32 natural logs indexed by word id.
            keys, logp, backoff: for orders 2..n, sorted int64 keys and aligned float32 natural-log
                probabilities (NaN for a placeholder context) and backoffs (empty for order n).
        """
        self.vocab = vocab
        self.order = len(keys) + 1
        self.counts = list(counts)
        self.V = vocab.size
        self.unigram_logp = unigram_logp
        self.unigram_backoff = unigram_backoff
        self.keys = keys
        self.logp = logp
        self.backoff = backoff
        self._never = np.zeros(self.V, dtype=bool)
        self._never[vocab.nonpredictable_ids()] = True

    # --- construction -----------------------------------------------------------------------------
    @classmethod
    def from_arpa(cls, path: str, unk: Optional[str] = None, unk_log10_prob: float = -99.0) -> "NgramLM":
        """Read an ARPA file (plain or ``.gz``, any order >= 1).

        Args:
            path: the ARPA file.
            unk: the unknown-word symbol; None: the file's ``<unk>`` spelled in any case
                (SRILM writes ``<unk>``, some toolkits ``<UNK>``), else ``<unk>``.
            unk_log10_prob: log10 probability given to the unknown word when the file has no such
                1-gram.

        Raises:
            ValueError: naming the file (and line) for a malformed file: no ``\\data\\``, a count
                mismatch, a bad number, an n-gram line of the wrong order, a word of a higher-order
                n-gram that is not a 1-gram, a duplicate n-gram, missing ``\\end\\``.
        """
        counts, words, uni_logp10, uni_bo10, sections = _read_arpa(path, unk)
        vocab = Vocabulary(((w, i) for i, w in enumerate(words)), unk=words[3])  # the unknown word is id 3
        V = vocab.size
        if np.isnan(uni_logp10[vocab.unk_id]):
            uni_logp10[vocab.unk_id] = unk_log10_prob
        unigram_logp = np.where(np.isnan(uni_logp10), -np.inf, uni_logp10 * LN10)  # <eps> etc.: never listed
        unigram_backoff = uni_bo10 * LN10
        arrays = [section.arrays() for section in sections]  # orders 2..n: (ids, log10 p, log10 backoff)
        del sections
        keys, logp, backoff = _build_trie(
            [a[0] for a in arrays], [a[1] * LN10 for a in arrays], [a[2] * LN10 for a in arrays], V, f"{path}: ", vocab.decode
        )
        del arrays
        if backoff:  # the highest order's backoffs are never used
            backoff[-1] = np.zeros(0)
        return cls(
            vocab,
            unigram_logp.astype(np.float32),
            unigram_backoff.astype(np.float32),
            keys,
            [p.astype(np.float32) for p in logp],
            [b.astype(np.float32) for b in backoff],
            counts,
        )

    @property
    def nbytes(self) -> int:
        """Bytes held by the model's arrays."""
        arrays = [self.unigram_logp, self.unigram_backoff, self._never] + self.keys + self.logp + self.backoff
        return sum(a.nbytes for a in arrays)

    # --- lookups ----------------------------------------------------------------------------------
    def _backoff_of(self, length: int, node: np.ndarray) -> np.ndarray:
        """Backoff (0 for a missing context) of contexts of ``length`` words given their rows."""
        table = self.unigram_backoff if length == 1 else self.backoff[length - 2]
        return np.where(node >= 0, table[np.maximum(node, 0)], 0.0)

    def _score_contexts(self, contexts: np.ndarray, inverse: np.ndarray, words: np.ndarray) -> np.ndarray:
        """``[N]`` float64 ``log P(words | contexts[inverse])`` for left-padded (-1) contexts ``[U, n-1]``."""
        k = contexts.shape[1]
        result = self.unigram_logp[words].astype(np.float64)
        for length in range(1, k + 1):  # back off from the longest context: r_L = p(ctx_L w) or bo(ctx_L) + r_{L-1}
            node = _walk(self.keys, self.V, contexts[:, k - length :])
            bo = self._backoff_of(length, node)
            row = _find(self.keys[length - 1], self.V, node[inverse], words)
            lp = self.logp[length - 1][np.maximum(row, 0)] if len(self.logp[length - 1]) else np.zeros(len(row))
            listed = (row >= 0) & ~np.isnan(lp)
            result = np.where(listed, lp, result + bo[inverse])
        result[self._never[words]] = -np.inf
        return result

    def _check_ids(self, ids: np.ndarray, what: str) -> None:
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= self.V):
            raise ValueError(f"{what} ids must be in 0..{self.V - 1}, got {int(ids.min())}..{int(ids.max())}")

    # --- public scoring ---------------------------------------------------------------------------
    def score(self, histories: torch.Tensor, lengths: torch.Tensor, inverse: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """``log P(words[i] | histories[inverse[i], :lengths[inverse[i]]])`` for every pair.

        Same argument meaning as :func:`models.scoring.score_unique_histories`; only the last
        ``order - 1`` tokens of each history are used (a history that starts with ``<s>`` and is
        shorter than that is a sentence-initial context).

        Args:
            histories: ``[U, T]`` int64 right-padded histories (vocabulary ids; padding ignored).
            lengths: ``[U]`` int64 history lengths in ``0..T`` (0: no context, unigram probability).
            inverse: ``[N]`` int64, the history (row of ``histories``) of each pair.
            words: ``[N]`` int64 next-word ids.

        Returns:
            ``[N]`` float32 natural-log probabilities on the CPU (``-inf`` for ``<s>``/``<eps>``).
        """
        hist = histories.detach().cpu().numpy().astype(np.int64, copy=False)
        lens = lengths.detach().cpu().numpy().astype(np.int64, copy=False)
        inv = inverse.detach().cpu().numpy().astype(np.int64, copy=False)
        wrd = words.detach().cpu().numpy().astype(np.int64, copy=False)
        if not (hist.ndim == 2 and lens.shape == hist.shape[:1] and inv.ndim == 1 and wrd.shape == inv.shape):
            raise ValueError(
                f"shape mismatch: histories {hist.shape}, lengths {lens.shape}, inverse {inv.shape}, words {wrd.shape}"
            )
        if lens.size and (int(lens.min()) < 0 or int(lens.max()) > hist.shape[1]):
            raise ValueError(f"history lengths must be in 0..{hist.shape[1]}")
        if inv.size and (int(inv.min()) < 0 or int(inv.max()) >= hist.shape[0]):
            raise ValueError(f"inverse must index the {hist.shape[0]} histories")
        self._check_ids(wrd, "word")
        k = self.order - 1
        cols = lens[:, None] - k + np.arange(k)[None, :]  # last k positions of each history
        inside = cols >= 0
        contexts = np.full((hist.shape[0], k), -1, dtype=np.int64)
        if hist.shape[1]:
            contexts = np.where(inside, np.take_along_axis(hist, np.clip(cols, 0, hist.shape[1] - 1), axis=1), -1)
        self._check_ids(contexts[inside], "history")
        return torch.from_numpy(self._score_contexts(contexts, inv, wrd).astype(np.float32))

    def sentence_log_probs(self, sentences: Sequence[Sequence[int]]) -> torch.Tensor:
        """``log P(<s> w_1 .. w_n </s>)`` of each sentence of ids (without ``<s>``/``</s>``).

        Returns:
            ``[N]`` float64 natural logs: the sum over the words and ``</s>`` of ``log P(w_t | the
            previous order-1 tokens, <s> included)``.
        """
        lens = np.fromiter((len(s) + 2 for s in sentences), dtype=np.int64, count=len(sentences))
        bos, eos = self.vocab.bos_id, self.vocab.eos_id
        tokens = np.fromiter((t for s in sentences for t in (bos, *s, eos)), dtype=np.int64, count=int(lens.sum()))
        self._check_ids(tokens, "word")
        starts = np.cumsum(lens) - lens
        sentence = np.repeat(np.arange(len(sentences)), lens)
        targets = np.flatnonzero(np.arange(len(tokens)) != np.repeat(starts, lens))  # every token but <s>
        k = self.order - 1
        pos = targets[:, None] - k + np.arange(k)[None, :]
        contexts = np.where(pos >= starts[sentence[targets]][:, None], tokens[np.maximum(pos, 0)], -1)
        scores = self._score_contexts(contexts, np.arange(len(targets)), tokens[targets])
        return torch.from_numpy(np.bincount(sentence[targets], weights=scores, minlength=len(sentences)))

    def sentence_log_prob(self, words: Sequence[str]) -> float:
        """Natural-log probability of one sentence of words (no ``<s>``/``</s>``; OOV -> ``<unk>``)."""
        return float(self.sentence_log_probs([self.vocab.encode(words)])[0])


def _build_trie(
    words: List[np.ndarray],
    logp: List[np.ndarray],
    backoff: List[np.ndarray],
    V: int,
    where: str,
    decode: Callable[[Sequence[int]], List[str]],
) -> Tuple[List[np.ndarray], List[np.ndarray], List[np.ndarray]]:
    """Sorted key tables for orders 2..n from word-id n-grams (``words[m - 2]`` is ``[c, m]``).

    ``where`` prefixes error messages, ``decode`` maps ids to words for them.

    Contexts missing from the next lower order are added there as placeholders (NaN probability,
    backoff 0), and that order is rebuilt. Returns ``(keys, logp, backoff)`` per order, sorted.
    """
    words, logp, backoff = list(words), list(logp), list(backoff)
    keys: List[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(words)
    i = 0  # index of order m = i + 2
    while i < len(words):
        w = words[i]
        node = _walk(keys, V, w[:, :-1])
        missing = node < 0
        if missing.any():
            assert i > 0, "every word of an n-gram is a 1-gram"
            extra = np.unique(w[missing, :-1], axis=0)
            words[i - 1] = np.concatenate([words[i - 1], extra])
            logp[i - 1] = np.concatenate([logp[i - 1], np.full(len(extra), np.nan)])
            backoff[i - 1] = np.concatenate([backoff[i - 1], np.zeros(len(extra))])
            i -= 1
            continue
        table_size = len(keys[i - 1]) if i else V
        assert table_size * V < 2**63, "n-gram keys overflow int64"
        key = node * V + w[:, -1]
        perm = np.argsort(key, kind="stable")
        key = key[perm]
        dup = np.flatnonzero(key[1:] == key[:-1])
        if len(dup):
            raise ValueError(f"{where}{i + 2}-gram {' '.join(decode(w[perm[dup[0]]].tolist()))!r} listed twice")
        keys[i], words[i], logp[i], backoff[i] = key, w[perm], logp[i][perm], backoff[i][perm]
        i += 1
    return keys, logp, backoff


def _find(keys: np.ndarray, V: int, node: np.ndarray, word: np.ndarray) -> np.ndarray:
    """Row of the n-gram ``context(node) + word`` in a sorted key table, or -1 where absent.

    Args:
        keys: sorted int64 keys of order m (``node(context) * V + word``).
        node: ``[R]`` int64 rows of the contexts in order m-1 (-1: missing).
        word: ``[R]`` int64 word ids (-1: missing).
    """
    if not len(keys):
        return np.full(len(node), -1, dtype=np.int64)
    query = node * V + word
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where((node >= 0) & (word >= 0) & (keys[pos] == query), pos, -1)


def _walk(keys: List[np.ndarray], V: int, contexts: np.ndarray) -> np.ndarray:
    """``[R]`` int64 row of each context ``[R, L]`` (``L >= 1``) in order L's table, or -1.

    ``keys[j]`` is order j+2's table (only the first L-1 are used). Order 1's row is the word id
    itself; any -1 token makes the context missing.
    """
    node = contexts[:, 0].astype(np.int64)
    for j in range(1, contexts.shape[1]):
        node = _find(keys[j - 1], V, node, contexts[:, j])
    return node
