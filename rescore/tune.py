"""Tune the LM scale, word penalty and interpolation weight on a dev set with references.

The lattices are expanded and scored **once** (the normal rescoring job, the rescored lattices
kept with their per-arc ``old_lm_scores`` and ``afp_lm_scores``); then every grid point
``(lm_scale, word_penalty, w)`` is a best-path search on those same lattices:

    total = am_scale·am + lm_scale·((1 − w)·old_lm + w·afp_lm) + word_penalty·words

Only the error counts per grid point are kept, batch after batch, so memory is bounded by one
batch. The grid point with the fewest errors (the first in grid order on a tie) is written to
``scales.json``, which ``afp-rescore --scales`` reads.
"""
import json
from dataclasses import asdict, dataclass
from itertools import product
from typing import Dict, List, Mapping, Sequence, Tuple

import k2
import kaldialign
import numpy as np

from lattices.lattice_batch import utterance_scaled_scores
from lattices.nbest import best_path_words
from lattices.normalize import NormalizationRules
from lattices.validate import select_lattices
from models.distributed import resolve_device
from models.files import atomic_open, read_references, read_text

from .combine import interpolate_lm
from .pipeline import RescoreOptions
from .run import RunOptions, rescored_batches
from .scorers import load_scorer
from .wer import normalize_case

DEFAULT_LM_SCALES = (1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0)
DEFAULT_PENALTIES = (-20.0, -16.0, -12.0, -8.0, -4.0, 0.0, 4.0)
DEFAULT_WEIGHTS = (0.25, 0.5, 0.75, 1.0)
Point = Tuple[float, float, float]  # (lm_scale, word_penalty, w)


@dataclass
class TunedScales:
    """What ``scales.json`` holds (``afp-rescore --scales``)."""

    am_scale: float
    lm_scale: float
    word_penalty: float
    interpolate: float


def utterance_errors(refs: Sequence[Sequence[str]], hyps: Sequence[Sequence[str]]) -> np.ndarray:
    """``[utt]`` edit distances (case-insensitive)."""
    return np.array([kaldialign.edit_distance(normalize_case(r), normalize_case(h))["total"]
                     for r, h in zip(refs, hyps)], dtype=np.int64)


def grid_errors(fsas: k2.Fsa, refs: Sequence[Sequence[str]], symbols: k2.SymbolTable, am_scale: float,
                grid: Sequence[Point]) -> np.ndarray:
    """Errors ``[grid point][utt]`` of the 1-best of every rescored lattice at every grid point:
    the same search as ``afp-rescore`` (:func:`lattices.nbest.best_path_words`, its 1-best), so a tuned point gives
    exactly the errors ``afp-rescore`` then makes, ties included.

    Args:
        fsas: rescored FsaVec ``[utt][state][arc]`` with ``am_scores``, ``old_lm_scores`` and
            ``afp_lm_scores`` (:func:`rescore.combine.rescored_lattices`); not changed.
        refs: ``[utt]`` reference words.
    """
    errors: Dict[Point, np.ndarray] = {}
    for w in sorted({w for _, _, w in grid}):  # one interpolation per weight, then its scales
        lm = interpolate_lm(fsas.old_lm_scores, fsas.afp_lm_scores, w)
        for s, p, _ in (g for g in grid if g[2] == w):
            scores = utterance_scaled_scores(fsas, [(am_scale, s, p)] * fsas.shape[0], lm)  # as afp-rescore's 1-best
            hyps = best_path_words(fsas, scores)
            errors[(s, p, w)] = utterance_errors(refs, [[symbols.get(x) for x in h] for h in hyps])
    return np.stack([errors[g] for g in grid])


def tune(opts: RunOptions, lm_scales: Sequence[float] = DEFAULT_LM_SCALES,
         word_penalties: Sequence[float] = DEFAULT_PENALTIES, weights: Sequence[float] = DEFAULT_WEIGHTS,
         rounds: int = 2) -> Dict[str, object]:
    """Rescore ``opts.lattices`` and find the grid point with the fewest errors against ``opts.ref``.

    Expansions larger than ``max_arcs`` are pruned by a beam on the lattice scores at some scales
    (``opts.lm_scale``/``opts.word_penalty`` in the first round), and the word penalty changes
    which paths survive; so each further round rescores once more, pruning at the previous
    round's best scales, and searches the grid again. Utterances without a reference are skipped;
    ``opts.am_scale`` (default 1) is kept fixed.

    Returns:
        ``{"scales": TunedScales, "errors": best total, "ref_words", "utterances", "grid":
        [(lm_scale, word_penalty, w, errors)] of the last round, "rounds": [(scales, errors)],
        "failures": [(source, message)]}``.
    """
    if opts.ref is None:
        raise ValueError("tuning needs references (--ref)")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    refs = read_references(opts.ref)
    grid = list(product(lm_scales, word_penalties, weights))
    if not grid:
        raise ValueError("an empty grid: give at least one LM scale, word penalty and weight")
    am_scale = 1.0 if opts.am_scale is None else opts.am_scale
    rescore_opts = RescoreOptions(**{**opts.rescore.__dict__, "keep_lattices": True, "nbest": 1, "decode": "viterbi", "ctm": False})
    device = str(resolve_device(opts.device))
    scorer = load_scorer(opts.lm, device, normalize=opts.normalize, unk=opts.unk)
    old = load_scorer(opts.old_lm, device, unk=opts.unk) if opts.old_lm else None
    history: List[Tuple[TunedScales, int]] = []
    round_opts = opts
    for _ in range(rounds):
        failures: List[Tuple[str, str]] = []
        totals, ref_words, utterances = _grid_totals(round_opts, rescore_opts, scorer, old, refs, am_scale, grid, failures)
        best = int(np.argmin(totals))
        s, p, w = grid[best]
        history.append((TunedScales(am_scale, s, p, w), int(totals[best])))
        round_opts = RunOptions(**{**round_opts.__dict__, "lm_scale": s, "word_penalty": p})
    scales, errors = history[-1]
    return {"scales": scales, "errors": errors, "ref_words": ref_words, "utterances": utterances,
            "grid": [(*g, int(e)) for g, e in zip(grid, totals)], "rounds": [(asdict(sc), e) for sc, e in history],
            "failures": failures}


def _grid_totals(opts: RunOptions, rescore_opts: RescoreOptions, scorer, old, refs, am_scale: float,
                 grid: Sequence[Point], failures: List[Tuple[str, str]]) -> Tuple[np.ndarray, int, int]:
    """One round: rescore every batch once and add up the errors of every grid point."""
    totals = np.zeros(len(grid), dtype=np.int64)
    ref_words = utterances = 0
    for _, out, _, _ in rescored_batches(opts, rescore_opts, scorer, old, failures, warn_scales=False):
        lats = out.lattices
        have = [i for i, u in enumerate(lats.utt_ids) if u in refs]
        if not have:
            continue
        fsas = lats.fsas if len(have) == len(lats.utt_ids) else select_lattices(lats.fsas, have)
        ref_lists = [refs[lats.utt_ids[i]] for i in have]
        totals += grid_errors(fsas, ref_lists, lats.symbols, am_scale, grid).sum(axis=1)
        ref_words += sum(len(r) for r in ref_lists)
        utterances += len(have)
    if not utterances:
        raise ValueError(f"no rescored utterance has a reference in {opts.ref}")
    return totals, ref_words, utterances


def write_scales(path: str, scales: TunedScales, info: Mapping[str, object]) -> None:
    """``scales.json``: the tuned scales plus how they were found (atomically)."""
    with atomic_open(path) as f:
        json.dump({**asdict(scales), **info}, f, indent=2)
        f.write("\n")


def penalties_of(rules: NormalizationRules) -> Dict[str, float]:
    """The silence/filler/``!NULL`` penalties of ``rules``, as ``scales.json`` records them."""
    return {"silence_penalty": rules.silence_penalty, "filler_penalty": rules.filler_penalty,
            "null_penalty": rules.null_penalty}


def read_scales(path: str) -> Tuple[TunedScales, Dict[str, float]]:
    """Read ``scales.json``: its :class:`TunedScales` and the penalties it was tuned with (0 for
    those a file does not record). ``ValueError`` naming the file when it is not one."""
    try:
        d = json.loads(read_text(path))
        scales = TunedScales(float(d["am_scale"]), float(d["lm_scale"]), float(d["word_penalty"]), float(d["interpolate"]))
        return scales, {k: float(d.get(k, 0.0)) for k in penalties_of(NormalizationRules())}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a scales.json written by afp-tune ({type(e).__name__}: {e})") from None
