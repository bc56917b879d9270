"""Rescore a batch of lattices with an AFP LM: validate, expand, score all arcs, combine, n-best.

Scores combine as (natural-log scores, higher is better)::

    total = am_scale·am + lm_scale·((1 − w)·old_lm + w·afp_lm) + word_penalty·n_words

with ``w = interpolate`` (1 replaces the lattice's LM scores; 0 keeps them; in between is a
log-linear interpolation). ``method="afp"`` expands every lattice to unique K-token histories and
scores all arcs of the batch in one deduplicated, chunked LM pass, which is exact for an AFP-K
model. ``method="nbest-exact"`` is the baseline: the exact N-best list of each lattice rescored
with the same model run as a full-history RNN; with an ``old`` LM the lattices are first expanded
for and scored by it (the first pass), and the N-best list comes from that lattice.
"""
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import k2
import torch

from lattices.ctm import CtmWord, ctm_words
from lattices.lattice_batch import LatticeBatch, posterior_scales, scale_headers, with_utterance_scales
from lattices.mbr import MbrHypothesis, mbr_decode
from lattices.nbest import Hypothesis, nbest
from lattices.posteriors import prune_at_scales
from lattices.validate import select_lattices, validate_batch

from .arc_scores import arc_lm_scores, history_tokens
from .combine import rescored_lattices
from .expand import Expansion
from .fit import PruneInfo, expand_within
from .lookahead import Lookahead, LookaheadWeights
from .nbest_exact import rescore_nbest_exact
from .scorers import Scorer

Scales = Tuple[float, float, float]  # (am_scale, lm_scale, word_penalty)
METHODS = ("afp", "nbest-exact")
DECODES = ("viterbi", "mbr")


@dataclass
class RescoreOptions:
    """How to rescore (see the module docstring for the score formula).

    Attributes:
        method: ``afp`` or ``nbest-exact``.
        interpolate: w, the weight of the new LM's log-probabilities.
        nbest: hypotheses kept per utterance (for ``nbest-exact`` also the list size rescored).
        order: K of the history expansion (default: the model's ``iterations``; required for a
            model trained with BPTT, which is then run as AFP-K).
        max_arcs: per-utterance bound on expanded arcs; larger expansions are beam-pruned first.
        max_batch: distinct histories per LM chunk (a chunk that hits CUDA out-of-memory is retried
            at half size; see :func:`models.chunks.run_in_chunks`).
        lm_scales: extra LM scales for which the 1-best is also computed (WER sweeps).
        keep_lattices: return the rescored (expanded) lattices.
        progress: show progress bars (LM chunks).
        decode: the 1-best: ``viterbi`` (best path) or ``mbr`` (lattice MBR on the rescored
            lattice, :mod:`lattices.mbr`; ``afp`` only).
        first_pass_beam: with an ``old`` LM and ``afp``: first expand for and score with the old
            LM alone (its scores replace the lattice's, as Kaldi's ``lmrescore``), prune that
            lattice at this Viterbi beam at each utterance's scales (``lattice-prune``), and only
            then expand for the new LM, with the old LM's scores as the lattice's LM scores.
            ``nbest-exact`` always takes its N-best from such a first pass when there is an old LM
            (pruned only when this is given). Without an old LM, both methods prune the input
            lattices at this beam (their own scores, each utterance's scales) before anything else.
        first_pass_max_arcs: ``max_arcs`` of the first-pass expansion (default ``max_arcs``).
        lookahead: prune the lattices that must be pruned to fit ``max_arcs`` by scores that
            include the LMs with one word of context (:mod:`rescore.lookahead`), not by the
            lattice's own scores alone.
        ctm: compute the 1-best's word times and confidences (``RescoreOutput.ctm``) when the
            lattices have times; for ``afp`` that is a forward-backward over the expanded
            lattices (2.1 of 25 s at ``max_arcs`` 200,000 on bench/RESULTS.md 7.9's lattices).
    """

    method: str = "afp"
    interpolate: float = 1.0
    nbest: int = 10
    order: Optional[int] = None
    max_arcs: Optional[int] = 100_000
    max_batch: int = 4096
    lm_scales: Sequence[float] = ()
    keep_lattices: bool = False
    progress: bool = False
    decode: str = "viterbi"
    first_pass_beam: Optional[float] = None
    first_pass_max_arcs: Optional[int] = None
    lookahead: bool = True
    ctm: bool = True

    def __post_init__(self) -> None:
        if self.first_pass_beam is not None and self.first_pass_beam < 0:
            raise ValueError(f"first_pass_beam must be >= 0, got {self.first_pass_beam}")
        if self.decode not in DECODES:
            raise ValueError(f"decode must be one of {DECODES}, got {self.decode!r}")
        if self.decode == "mbr" and self.method != "afp":
            raise ValueError("--decode mbr needs --method afp (MBR decodes the rescored lattice)")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not 0.0 <= self.interpolate <= 1.0:
            raise ValueError(f"interpolate must be in [0, 1], got {self.interpolate}")
        if self.nbest < 1:
            raise ValueError(f"nbest must be >= 1, got {self.nbest}")


@dataclass
class RescoreOutput:
    """What :func:`rescore_batch` returns.

    Attributes:
        utt_ids: the utterances rescored, in input order.
        hyps: ``[utt][rank]`` hypotheses (word ids of the lattice symbol table), best first.
        sweep: ``{lm_scale: [utt] 1-best word ids}`` for ``lm_scales``.
        lattices: the rescored lattices (``keep_lattices``): ``lm_scores`` combined, plus
            ``old_lm_scores`` and ``afp_lm_scores`` per arc.
        failures: ``(utt_id, message)`` for every utterance that could not be rescored.
        pruned: ``{utt_id: {"beam", "arcs_before", "arcs_after_pruning", "expanded_arcs"}}``.
        stats: counts and seconds (arcs before/after expansion, distinct histories, ...).
        best: ``[utt]`` word ids of the decision when it is not ``hyps[u][0]`` (``decode="mbr"``).
        ctm: ``[utt][word]`` times and confidences of the 1-best, when the lattices have times and
            ``RescoreOptions.ctm`` is set (:mod:`lattices.ctm`; confidences are posteriors in the lattice the 1-best was chosen
            from, at its scales: the rescored lattice for ``afp``, the first-pass lattice for
            ``nbest-exact``).
    """

    utt_ids: List[str]
    hyps: List[List[Hypothesis]]
    sweep: Dict[float, List[List[int]]] = field(default_factory=dict)
    ctm: Optional[List[List[CtmWord]]] = None
    best: Optional[List[List[int]]] = None
    lattices: Optional[LatticeBatch] = None
    failures: List[Tuple[str, str]] = field(default_factory=list)
    pruned: Dict[str, Dict[str, float]] = field(default_factory=dict)
    stats: Dict[str, float] = field(default_factory=dict)


@dataclass
class ScoredExpansion:
    """What :func:`expand_and_score` returns.

    Attributes:
        expansion, pruned, failures: as :func:`rescore.fit.expand_within` returns them.
        scores: per LM, ``[num expanded arcs]`` float32 log-probabilities of each arc's word.
        distinct: distinct histories the first LM scored.
        expand_seconds, lm_seconds: time spent expanding and scoring.
    """

    expansion: Expansion
    pruned: Dict[int, PruneInfo]
    failures: Dict[int, str]
    scores: List[torch.Tensor]
    distinct: int
    expand_seconds: float
    lm_seconds: float


def expand_and_score(
    fsas: k2.Fsa, symbols: k2.SymbolTable, lms: Sequence[Scorer], order: int, max_arcs: Optional[int],
    max_batch: int = 4096, progress: bool = False, lookahead: Optional[LookaheadWeights] = None,
) -> ScoredExpansion:
    """Expand ``fsas`` to unique ``order``-token histories (pruning to ``max_arcs`` by the beam on
    ``fsas.scores``) and score every expanded arc with each LM of ``lms`` in one pass per LM.

    With ``lookahead``, the beam applies to those scores with the LMs' one-word-context look-ahead
    in them, combined with the weights it gives (:mod:`rescore.lookahead`). The expansion grows on
    the first LM's device (:attr:`rescore.scorers.Scorer.device`), as its scores are computed."""
    t0 = time.perf_counter()
    device = lms[0].device
    tokens = history_tokens(symbols, lms)
    la = None
    if lookahead is not None:
        la = Lookahead(lms, tokens, lookahead, symbols, max_batch, device).viterbi
    expansion, pruned, failures = expand_within(fsas, order, tokens.bos, tokens.of_labels(fsas.labels), max_arcs,
                                                prune_scores=la, device=device)
    t1 = time.perf_counter()
    scored = [arc_lm_scores(expansion, lm, symbols, tokens, j, max_batch, progress) for j, lm in enumerate(lms)]
    return ScoredExpansion(expansion, pruned, failures, [s for s, _ in scored], scored[0][1], t1 - t0, time.perf_counter() - t1)


@dataclass
class FirstPass:
    """The lattices after the first pass (:func:`first_pass`), ready for the new LM.

    Attributes:
        batch: the kept lattices; with an old LM their ``lm_scores`` are the old LM's
            (``scores = am + lm``).
        scales: ``[utt]`` their scales.
        failures, pruned: as in :class:`RescoreOutput`, keyed by utterance id.
        seconds: time taken.
        arcs_in: arcs of the lattices the first pass was given.
    """

    batch: LatticeBatch
    scales: List[Scales]
    failures: List[Tuple[str, str]]
    pruned: Dict[str, Dict[str, float]]
    seconds: float
    arcs_in: int


def has_first_pass(opts: RescoreOptions, old: Optional[Scorer]) -> bool:
    """Whether :func:`rescore_batch` runs :func:`first_pass` before the new LM: with a first-pass
    beam, and for ``nbest-exact`` with an old LM (whose N-best lists come from its lattice)."""
    return opts.first_pass_beam is not None or (old is not None and opts.method == "nbest-exact")


def first_pass(batch: LatticeBatch, old: Optional[Scorer], scales: List[Scales], opts: RescoreOptions) -> FirstPass:
    """Expand valid lattices ``batch`` for the ``old`` LM alone and let its scores replace the
    lattices' LM scores; with ``opts.first_pass_beam``, prune the result at that beam at each
    utterance's scales. Without an ``old`` LM, only that pruning, of the input lattices."""
    t0 = time.perf_counter()
    arcs_in = int(batch.fsas.num_arcs)
    if old is None:
        assert opts.first_pass_beam is not None, "no old LM and no beam: there is no first pass"
        fsas, _ = prune_at_scales(batch.fsas, scales, opts.first_pass_beam) if len(batch) else (batch.fsas, None)
        return FirstPass(LatticeBatch(fsas, batch.utt_ids, batch.symbols, batch.headers), scales, [], {},
                         time.perf_counter() - t0, arcs_in)
    done = expand_and_score(with_utterance_scales(batch.fsas, scales), batch.symbols, [old], old.context or 1,
                            opts.first_pass_max_arcs or opts.max_arcs, opts.max_batch, opts.progress,
                            LookaheadWeights(scales, [1.0], 0.0) if opts.lookahead else None)
    fsas = rescored_lattices(done.expansion.fsas, done.expansion.fsas.lm_scores, done.scores[0], 1.0)
    kept = done.expansion.kept
    kept_scales = [scales[i] for i in kept]
    if opts.first_pass_beam is not None and len(kept):
        fsas, _ = prune_at_scales(fsas, kept_scales, opts.first_pass_beam)
    utt_ids = [batch.utt_ids[i] for i in kept]
    return FirstPass(LatticeBatch(fsas, utt_ids, batch.symbols, [batch.headers[i] for i in kept] if batch.headers else []),
                     kept_scales, [(batch.utt_ids[i], msg) for i, msg in done.failures.items()],
                     {batch.utt_ids[i]: asdict(info) for i, info in done.pruned.items()}, time.perf_counter() - t0, arcs_in)


def _afp(batch: LatticeBatch, scorer: Scorer, old: Optional[Scorer], scales: List[Scales], opts: RescoreOptions) -> RescoreOutput:
    contexts = [scorer.context] + ([old.context] if old is not None else [])
    if opts.order is None and scorer.context is None:
        raise ValueError("the LM was trained with BPTT (exact mode): give the expansion order K (--iterations) "
                         "to run it as AFP-K, or use --method nbest-exact")
    order = opts.order or max(c for c in contexts if c is not None)
    lms = [scorer] + ([old] if old is not None else [])
    w = opts.interpolate
    la = LookaheadWeights(scales, [w, 1.0 - w], 0.0) if old is not None else LookaheadWeights(scales, [w], 1.0 - w)
    done = expand_and_score(with_utterance_scales(batch.fsas, scales), batch.symbols, lms, order, opts.max_arcs,
                            opts.max_batch, opts.progress, la if opts.lookahead else None)
    expansion, new_lm = done.expansion, done.scores[0]
    old_lm = done.scores[1] if old is not None else expansion.fsas.lm_scores
    t2 = time.perf_counter()

    fsas = rescored_lattices(expansion.fsas, old_lm, new_lm, opts.interpolate)
    kept = expansion.kept
    kept_scales = [scales[i] for i in kept]
    hyps = nbest(fsas, opts.nbest, scales=kept_scales)
    sweep = {s: [h[0].words for h in nbest(fsas, 1, scales=[(a, s, p) for a, _, p in kept_scales])] for s in opts.lm_scales}
    utt_ids = [batch.utt_ids[i] for i in kept]
    if opts.decode == "mbr":
        decided = mbr_decode(with_utterance_scales(fsas, posterior_scales(kept_scales)), [h[0].words for h in hyps])
        out = RescoreOutput(utt_ids, hyps, sweep, best=[m.words for m in decided], ctm=_mbr_ctm(decided, utt_ids, batch, opts.ctm))
        out.stats["mbr_expected_errors"] = sum(m.expected_errors for m in decided)
        out.stats["viterbi_expected_errors"] = sum(m.viterbi_expected_errors for m in decided)
    else:
        out = RescoreOutput(utt_ids, hyps, sweep, ctm=_ctm(fsas, utt_ids, hyps, kept_scales, batch, opts.ctm))
    t3 = time.perf_counter()  # search: n-best, the sweep, and MBR or the CTM alignment
    if opts.keep_lattices:  # the headers say the scales of the 1-best, as Kaldi/HTK lattices do
        out.lattices = LatticeBatch(fsas, utt_ids, batch.symbols, scale_headers([batch.headers[i] for i in kept], kept_scales))
    out.failures = [(batch.utt_ids[i], msg) for i, msg in done.failures.items()]
    out.pruned = {batch.utt_ids[i]: asdict(info) for i, info in done.pruned.items()}
    out.stats = {**out.stats, "arcs_before_expansion": int(batch.fsas.num_arcs), "arcs_after_expansion": int(fsas.num_arcs),
                 "distinct_histories": done.distinct, "cell_steps": scorer.stats.get("cell_steps", 0),
                 "order": order, "expand_seconds": done.expand_seconds,
                 "lm_seconds": done.lm_seconds, "search_seconds": t3 - t2}
    return out


def _nbest_exact(batch: LatticeBatch, scorer: Scorer, scales: List[Scales], opts: RescoreOptions) -> RescoreOutput:
    if scorer.model is None:
        raise ValueError("--method nbest-exact needs an afp-train-lm checkpoint as --lm (an n-gram belongs in --old-lm)")
    model, vocab = scorer.model, scorer.vocab
    fsas = batch.fsas
    t1 = time.perf_counter()
    lm_ids = scorer.symbol_ids(batch.symbols)
    norm = {"lm_ids": lm_ids, "normalize": scorer.normalize, "log_norm_offset": scorer.log_norm_offset}
    hyps = rescore_nbest_exact(fsas, batch.symbols, model, vocab, opts.nbest, 1.0, 1.0, 0.0, opts.interpolate, scales=scales, **norm)
    t2 = time.perf_counter()
    sweep = {}
    for s in opts.lm_scales:
        swept = rescore_nbest_exact(fsas, batch.symbols, model, vocab, opts.nbest, 1.0, 1.0, 0.0, opts.interpolate,
                                    scales=[(a, s, p) for a, _, p in scales], **norm)
        sweep[s] = [h[0].words for h in swept]
    out = RescoreOutput(list(batch.utt_ids), hyps, sweep, ctm=_ctm(fsas, batch.utt_ids, hyps, scales, batch, opts.ctm))
    out.stats = {"arcs_before_expansion": int(fsas.num_arcs), "arcs_after_expansion": int(fsas.num_arcs),
                 "distinct_histories": 0, "hypotheses_scored": sum(len(h) for h in hyps), "lm_seconds": t2 - t1}
    return out


def _ctm(fsas: k2.Fsa, utt_ids: List[str], hyps: List[List[Hypothesis]], scales: List[Scales],
         batch: LatticeBatch, wanted: bool) -> Optional[List[List[CtmWord]]]:
    """CTM words of the 1-best hypotheses in ``fsas`` (None when not ``wanted`` or the lattices
    have no times)."""
    if not wanted or not (hasattr(fsas, "start_times") and hasattr(fsas, "end_times")) or not utt_ids:
        return None
    return ctm_words(with_utterance_scales(fsas, posterior_scales(scales)), utt_ids, [h[0].words for h in hyps], batch.symbols)


def _mbr_ctm(decided: List[MbrHypothesis], utt_ids: List[str], batch: LatticeBatch,
             wanted: bool) -> Optional[List[List[CtmWord]]]:
    """CTM words of MBR decisions: the slots' expected times and posteriors (None when not
    ``wanted`` or without times)."""
    if not wanted or not decided or decided[0].start_times is None:
        return None
    return [[CtmWord(u, b, max(e - b, 0.0), batch.symbols.get(w), c)
             for w, c, b, e in zip(m.words, m.confidences, m.start_times, m.end_times)] for u, m in zip(utt_ids, decided)]


def _drop_non_finite(batch: LatticeBatch) -> Tuple[LatticeBatch, List[Tuple[str, str]]]:
    """Remove utterances with a NaN or infinite acoustic/LM score (returned as failures)."""
    fsas = batch.fsas
    utt_of_arc = fsas.arcs.row_ids(1).long()[fsas.arcs.row_ids(2).long()]
    bad_arc = ~(torch.isfinite(fsas.am_scores) & torch.isfinite(fsas.lm_scores))
    bad = sorted(set(utt_of_arc[bad_arc].tolist()))
    if not bad:
        return batch, []
    keep = [i for i in range(len(batch)) if i not in set(bad)]
    kept = LatticeBatch(select_lattices(fsas, keep), [batch.utt_ids[i] for i in keep], batch.symbols,
                        [batch.headers[i] for i in keep])
    return kept, [(batch.utt_ids[i], "NaN or infinite acoustic/LM score on an arc") for i in bad]


def validated(batch: LatticeBatch, scales: Sequence[Scales]) -> Tuple[LatticeBatch, List[Scales], List[Tuple[str, str]]]:
    """The lattices of ``batch`` that can be rescored (finite scores, acyclic, a complete path),
    their scales, and ``(utt_id, message)`` for each of the others.

    Raises:
        ValueError: ``scales`` not one per lattice.
    """
    if len(scales) != len(batch):
        raise ValueError(f"{len(scales)} scale settings for {len(batch)} lattices")
    index = {u: i for i, u in enumerate(batch.utt_ids)}
    batch, bad_scores = _drop_non_finite(batch)
    good, problems = validate_batch(batch)
    return good, [scales[index[u]] for u in good.utt_ids], bad_scores + list(problems)


def rescore_batch(
    batch: LatticeBatch, scorer: Scorer, scales: Sequence[Scales], opts: RescoreOptions, old: Optional[Scorer] = None
) -> RescoreOutput:
    """Rescore every lattice of ``batch`` (not modified) with the LM ``scorer``.

    Args:
        batch: lattices ``[utt][state][arc]`` as :func:`lattices.reader.read_lattices` returns them.
        scorer: the new LM (:func:`rescore.scorers.load_scorer`: AFP checkpoint or ARPA n-gram).
        scales: per utterance ``(am_scale, lm_scale, word_penalty)``.
        opts: see :class:`RescoreOptions`.
        old: an LM that supplies (replaces) the lattices' old LM scores before interpolation,
            e.g. the recognizer's n-gram when the lattices carry none.

    Returns:
        A :class:`RescoreOutput`; bad utterances (cycle, no complete path, expansion that cannot be
        pruned to ``max_arcs``) are listed in ``failures``, the others are rescored.
    """
    good, good_scales, problems = validated(batch, scales)
    if len(good) == 0:
        return RescoreOutput([], [], failures=list(problems))
    if has_first_pass(opts, old):
        out = rescore_first_passed(first_pass(good, old, good_scales, opts), scorer, opts)
    else:
        out = _second_stage(good, scorer, old, good_scales, opts)
    out.failures = list(problems) + out.failures
    return out


def rescore_first_passed(fp: FirstPass, scorer: Scorer, opts: RescoreOptions) -> RescoreOutput:
    """The new LM's stage of :func:`rescore_batch` on the results of its :func:`first_pass`
    (lattices already validated; ``opts`` are the job's, first-pass settings included).

    Returns:
        A :class:`RescoreOutput` with the first pass's failures, pruning and seconds in it.
    """
    second = replace(opts, first_pass_beam=None)
    out = _second_stage(fp.batch, scorer, None, fp.scales, second) if len(fp.batch) else RescoreOutput([], [])
    out.failures = fp.failures + out.failures
    out.pruned = {**fp.pruned, **out.pruned}
    out.stats = {**out.stats, "first_pass_seconds": fp.seconds, "arcs_before_expansion": fp.arcs_in}
    out.stats["seconds"] = sum(v for k, v in out.stats.items() if k.endswith("_seconds"))
    return out


def _second_stage(batch: LatticeBatch, scorer: Scorer, old: Optional[Scorer], scales: List[Scales],
                  opts: RescoreOptions) -> RescoreOutput:
    """The new LM's stage (``old`` scored in the same expansion, for ``afp``) on valid lattices."""
    out = _afp(batch, scorer, old, scales, opts) if opts.method == "afp" else _nbest_exact(batch, scorer, scales, opts)
    out.stats["seconds"] = sum(v for k, v in out.stats.items() if k.endswith("_seconds"))
    return out
