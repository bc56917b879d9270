"""Word error rates and icefall-style reports (errs files, per-setting summaries).

Words are compared case-insensitively: both references and hypotheses go through
:func:`normalize_case` (``str.casefold``) before alignment, because references are often upper
case (LibriSpeech) while lattice words are lower case. The reports show the normalised words.

Alignment is Levenshtein via :func:`kaldialign.align` (one minimum-edit alignment per utterance),
so ``ins + dels + subs`` equals :func:`kaldialign.edit_distance`'s total.
"""
import collections
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import kaldialign
import numpy as np

from models.files import atomic_open

ERR = "*"  # the empty side of an insertion or deletion in alignments


def normalize_case(words: Sequence[str]) -> List[str]:
    """The case-normalised form in which words are compared (``casefold``: ``"ÄB"`` -> ``"äb"``)."""
    return [w.casefold() for w in words]


@dataclass
class WerResult:
    """Error counts over a set of utterances.

    Attributes:
        errors: ``ins + dels + subs``.
        ins, dels, subs: insertions, deletions, substitutions.
        ref_words: number of reference words.
        utts: number of reference utterances scored (all of ``refs``).
        wer: ``errors / ref_words`` as a fraction (0.1234, shown as ``12.34`` percent in the
            reports); 0 when there are no reference words and no errors, ``inf`` for errors
            without reference words.
        missing: reference utterances without a hypothesis (scored as all deletions).
        extra: hypotheses without a reference (ignored).
    """

    errors: int
    ins: int
    dels: int
    subs: int
    ref_words: int
    utts: int
    wer: float
    missing: int = 0
    extra: int = 0


@dataclass
class _Alignment:
    """Everything the reports need from aligning a corpus."""

    result: WerResult
    alis: List[Tuple[str, List[Tuple[str, str]]]]  # [(utt, [(ref word or ERR, hyp word or ERR)])]
    subs: Dict[Tuple[str, str], int]
    ins: Dict[str, int]
    dels: Dict[str, int]


def _align(refs: Mapping[str, Sequence[str]], hyps: Mapping[str, Sequence[str]]) -> _Alignment:
    """Align every reference with its hypothesis (empty if missing), utterances sorted by id."""
    alis: List[Tuple[str, List[Tuple[str, str]]]] = []
    subs: Dict[Tuple[str, str], int] = collections.Counter()
    ins: Dict[str, int] = collections.Counter()
    dels: Dict[str, int] = collections.Counter()
    ref_words = 0
    for utt in sorted(refs):
        ref = normalize_case(refs[utt])
        hyp = normalize_case(hyps.get(utt, []))
        if ERR in ref or ERR in hyp:
            raise ValueError(f"utterance {utt}: the word {ERR!r} is reserved for alignments")
        ali = kaldialign.align(ref, hyp, ERR)
        for r, h in ali:
            if r == ERR:
                ins[h] += 1
            elif h == ERR:
                dels[r] += 1
            elif r != h:
                subs[(r, h)] += 1
        ref_words += len(ref)
        alis.append((utt, ali))
    n_ins, n_dels, n_subs = sum(ins.values()), sum(dels.values()), sum(subs.values())
    errors = n_ins + n_dels + n_subs
    wer = errors / ref_words if ref_words else (0.0 if errors == 0 else float("inf"))
    result = WerResult(
        errors=errors,
        ins=n_ins,
        dels=n_dels,
        subs=n_subs,
        ref_words=ref_words,
        utts=len(refs),
        wer=wer,
        missing=sum(1 for u in refs if u not in hyps),
        extra=sum(1 for u in hyps if u not in refs),
    )
    return _Alignment(result, alis, subs, ins, dels)


def wer_details(refs: Mapping[str, Sequence[str]], hyps: Mapping[str, Sequence[str]]) -> WerResult:
    """Corpus WER of ``hyps`` against ``refs`` (case-insensitive, see :func:`normalize_case`).

    Args:
        refs: ``{utt_id: reference words}``; every utterance counts.
        hyps: ``{utt_id: hypothesis words}``; a reference without a hypothesis counts as all
            deletions (``missing``), a hypothesis without a reference is ignored (``extra``).

    Returns:
        A :class:`WerResult`.

    Raises:
        ValueError: a word equal to the alignment filler ``*`` (naming the utterance).
    """
    return _align(refs, hyps).result


def _combine_errors(ali: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """Merge runs of consecutive errors into one ``(ref words, hyp words)`` pair (icefall style)."""
    out: List[Tuple[List[str], List[str]]] = []
    in_error_run = False
    for r, h in ali:
        error = r != h
        if error and in_error_run:
            out[-1][0].append(r)
            out[-1][1].append(h)
        else:
            out.append(([r], [h]))
        in_error_run = error
    joined = []
    for rs, hs in out:
        rs, hs = [w for w in rs if w != ERR], [w for w in hs if w != ERR]
        joined.append((" ".join(rs) or ERR, " ".join(hs) or ERR))
    return joined


def write_errs_file(
    path: str, refs: Mapping[str, Sequence[str]], hyps: Mapping[str, Sequence[str]], title: str = ""
) -> WerResult:
    """Write an icefall-style errs file (as icefall's ``write_error_stats``), atomically.

    Layout: ``%WER 12.34 [ 5 / 40, 1 ins, 2 del, 2 sub ]``, then ``title`` (if any) and the counts
    of missing/extra hypotheses, the per-utterance alignments ``utt:\\tw1 (ref->hyp) w3``
    (consecutive errors merged, ``*`` for an empty side; sorted by utterance id), and the
    substitutions, deletions and insertions by decreasing count (ties by spelling).

    Args:
        path: output file (``.gz`` writes gzip).
        refs, hyps: as for :func:`wer_details`.
        title: a free-text line identifying the setting (e.g. ``test-other lm_scale_0.5``).

    Returns:
        The :class:`WerResult` written in the header.
    """
    aligned = _align(refs, hyps)
    result = aligned.result

    def by_count(counter):
        return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))

    with atomic_open(path) as f:
        f.write(f"%WER {100 * result.wer:.2f} [ {result.errors} / {result.ref_words}, {result.ins} ins, {result.dels} del, {result.subs} sub ]\n")
        if title:
            f.write(f"{title}\n")
        f.write(f"utterances: {result.utts}, without hypothesis (all deleted): {result.missing}, "
                f"hypotheses without reference (ignored): {result.extra}\n")
        f.write("\nPER-UTT DETAILS: corr or (ref->hyp)\n")
        for utt, ali in aligned.alis:
            f.write(f"{utt}:\t" + " ".join(r if r == h else f"({r}->{h})" for r, h in _combine_errors(ali)) + "\n")
        f.write("\nSUBSTITUTIONS: count ref -> hyp\n")
        for (r, h), c in by_count(aligned.subs):
            f.write(f"{c}   {r} -> {h}\n")
        f.write("\nDELETIONS: count ref\n")
        for r, c in by_count(aligned.dels):
            f.write(f"{c}   {r}\n")
        f.write("\nINSERTIONS: count hyp\n")
        for h, c in by_count(aligned.ins):
            f.write(f"{c}   {h}\n")
    return result


def write_wer_summary(path: str, rows: Sequence[Tuple[str, WerResult]]) -> None:
    """Write an icefall-style WER summary: a ``settings\\tWER`` header, then one
    ``name\\tWER`` line per setting (WER in percent, 2 decimals), best (lowest WER) first; ties keep
    the order of ``rows``. Written atomically.

    Args:
        path: output file.
        rows: ``(setting name, result)`` pairs, e.g. ``("lm_scale_0.5", result)``.

    Raises:
        ValueError: a setting name that is empty or contains a tab or newline.
    """
    for name, _ in rows:
        if not name or any(c in name for c in "\t\r\n"):
            raise ValueError(f"WER summary: bad setting name {name!r} (empty, or with a tab/newline)")
    ranked = sorted(rows, key=lambda row: row[1].wer)
    with atomic_open(path) as f:
        f.write("settings\tWER\n")
        for name, result in ranked:
            f.write(f"{name}\t{100 * result.wer:.2f}\n")


@dataclass
class PairedBootstrap:
    """How sure it is that system B differs from system A (:func:`paired_bootstrap`).

    Attributes:
        delta: WER of B minus WER of A on the whole set, as a fraction (negative: B is better).
        low, high: the central ``level`` interval of that difference over the resampled sets.
        p_better: the fraction of resampled sets on which B has the lower WER (Bisani and Ney's
            probability of improvement); near 0.5 means no evidence either way.
        samples: resampled sets drawn.
    """

    delta: float
    low: float
    high: float
    p_better: float
    samples: int


def paired_bootstrap(errors_a: Sequence[int], errors_b: Sequence[int], ref_words: Sequence[int],
                     samples: int = 10000, level: float = 0.95, seed: int = 0,
                     block: Optional[int] = None) -> PairedBootstrap:
    """Paired bootstrap over utterances (Bisani and Ney, ICASSP 2004): draw ``samples`` sets of
    utterances with replacement and compare the WERs of two systems on the same draws.

    Args:
        errors_a, errors_b: ``[utt]`` errors of systems A and B on the same utterances.
        ref_words: ``[utt]`` reference words of each utterance.
        samples: resampled sets (the result is a pure function of the inputs and ``seed``).
        level: coverage of the reported interval (0.95: the 2.5 and 97.5 percentiles).
        seed: seed of the draws.
        block: sets drawn at a time (bounds memory at ``block × utts`` counts; default about 2M
            counts), which does not change the result.

    Returns:
        A :class:`PairedBootstrap`.

    Raises:
        ValueError: arrays of different lengths, no utterances, no reference words, negative
            counts, or ``samples``/``level`` out of range.
    """
    a, b, r = (np.asarray(x, dtype=np.int64) for x in (errors_a, errors_b, ref_words))
    if not (a.ndim == b.ndim == r.ndim == 1 and len(a) == len(b) == len(r)):
        raise ValueError(f"paired bootstrap: errors_a, errors_b and ref_words must be [utt] arrays of one length, "
                         f"got shapes {a.shape}, {b.shape}, {r.shape}")
    if len(r) == 0 or r.sum() == 0:
        raise ValueError("paired bootstrap: no utterances or no reference words")
    if (a < 0).any() or (b < 0).any() or (r < 0).any():
        raise ValueError("paired bootstrap: negative error or word counts")
    if samples < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"paired bootstrap: samples={samples} must be >= 1 and level={level} in (0, 1)")
    n = len(r)
    rng = np.random.default_rng(seed)
    block = block or max(1, 2_000_000 // n)
    deltas = []
    for start in range(0, samples, block):
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(block, samples - start))  # [set][utt]
        words = counts @ r
        deltas.append((counts @ (b - a)) / np.maximum(words, 1))
    d = np.concatenate(deltas)
    tail = (1.0 - level) / 2
    return PairedBootstrap(delta=float((b - a).sum() / r.sum()), low=float(np.quantile(d, tail)),
                           high=float(np.quantile(d, 1.0 - tail)), p_better=float((d < 0).mean()), samples=samples)
