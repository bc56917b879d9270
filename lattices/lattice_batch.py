"""The one in-memory convention for a batch of word lattices.

A batch is a k2 FsaVec of word *acceptors* ``[utt][state][arc]`` plus what k2 does not carry:

- ``fsas.labels``: word ids in ``symbols`` (0 = epsilon, -1 on arcs entering the final state).
- ``fsas.am_scores``: float32 per arc, acoustic log-likelihood (natural log, higher is better).
- ``fsas.lm_scores``: float32 per arc, LM log-probability (natural log, higher is better);
  all zeros when the source format had none (e.g. pocketsphinx SLF).
- ``fsas.start_times`` / ``fsas.end_times`` (optional): float32 seconds per arc.
- ``fsas.scores``: always ``am_scores + lm_scores`` (scale 1/1, no penalty) after reading;
  use :func:`with_scales` to get the scaled scores used for search.

Scales: ``total = am_scale * am + lm_scale * lm + word_penalty * n_words`` where ``n_words``
counts arcs whose label is a real word (label > 0; normalisation maps every non-word symbol,
e.g. ``!NULL``, ``<s>``, ``<sil>``, to epsilon 0).
"""
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import k2
import torch


@dataclass
class LatticeBatch:
    """A batch of lattices as one k2 FsaVec, with utterance ids and the word symbol table.

    Attributes:
        fsas: k2 FsaVec ``[utt][state][arc]`` following the module docstring's convention.
        utt_ids: one id per FSA, in order.
        symbols: word symbol table (``words.txt``); ``symbols[0]`` is ``<eps>``.
        headers: per utterance, format metadata worth keeping (e.g. SLF ``lmscale``,
            ``wdpenalty``, ``acscale``; the source path under ``"path"``).
    """

    fsas: k2.Fsa
    utt_ids: List[str]
    symbols: k2.SymbolTable
    headers: List[Dict[str, object]] = field(default_factory=list)

    def __post_init__(self) -> None:
        assert len(self.fsas.shape) == 3, "fsas must be an FsaVec"
        assert self.fsas.shape[0] == len(self.utt_ids), (self.fsas.shape, len(self.utt_ids))
        if not self.headers:
            self.headers = [{} for _ in self.utt_ids]
        assert len(self.headers) == len(self.utt_ids)

    def __len__(self) -> int:
        return len(self.utt_ids)


def with_scales(
    fsas: k2.Fsa, am_scale: float = 1.0, lm_scale: float = 1.0, word_penalty: float = 0.0
) -> k2.Fsa:
    """Return a copy of ``fsas`` whose ``scores`` are the scaled total (input is not mutated).

    Args:
        fsas: FsaVec ``[utt][state][arc]`` with ``am_scores`` and ``lm_scores``.
        am_scale, lm_scale, word_penalty: see the module docstring.

    Returns:
        A new FsaVec sharing structure with ``fsas``; ``scores`` has shape ``[num_arcs]``.
    """
    out = fsas.clone()
    is_word = (fsas.labels > 0).to(fsas.am_scores.dtype)
    out.scores = am_scale * fsas.am_scores + lm_scale * fsas.lm_scores + word_penalty * is_word
    return out


def utterance_scaled_scores(fsas: k2.Fsa, scales: Sequence[Tuple[float, float, float]],
                            lm_scores: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``[num_arcs]`` scaled total ``am_scale·am + lm_scale·lm + word_penalty·[word]`` with one
    ``(am_scale, lm_scale, word_penalty)`` per FSA of the FsaVec ``[utt][state][arc]``, accumulated
    in double and returned in ``scores``' dtype; ``lm_scores`` replaces ``fsas.lm_scores`` when given."""
    fsa_of_arc = fsas.arcs.row_ids(1).long()[fsas.arcs.row_ids(2).long()]
    table = torch.tensor([[float(x) for x in t] for t in scales], dtype=torch.float64).reshape(-1, 3)[fsa_of_arc]
    lm = fsas.lm_scores if lm_scores is None else lm_scores
    return (table[:, 0] * fsas.am_scores.double() + table[:, 1] * lm.double()
            + table[:, 2] * (fsas.labels > 0).double()).to(fsas.scores.dtype)


def with_utterance_scales(fsas: k2.Fsa, scales: Sequence[Tuple[float, float, float]]) -> k2.Fsa:
    """Like :func:`with_scales` with one ``(am_scale, lm_scale, word_penalty)`` per FSA of the
    FsaVec ``[utt][state][arc]`` (:func:`utterance_scaled_scores`)."""
    out = fsas.clone()
    out.scores = utterance_scaled_scores(fsas, scales)
    return out


def scale_headers(headers: Sequence[Dict[str, object]], scales: Sequence[Tuple[float, float, float]]) -> List[Dict[str, object]]:
    """``headers`` with the fields that declare each utterance's ``(am_scale, lm_scale,
    word_penalty)`` (SLF ``acscale``/``lmscale``/``wdpenalty``), so written lattices say the scales
    they are meant to be searched at, as Kaldi/HTK first-pass lattices do."""
    return [{**h, "acscale": a, "lmscale": s, "wdpenalty": p} for h, (a, s, p) in zip(headers, scales)]


def header_scales(header: Dict[str, object]) -> Optional[Dict[str, float]]:
    """Scales a lattice header declares (SLF ``acscale``/``lmscale``/``wdpenalty``), if any."""
    keys = {"acscale": "am_scale", "lmscale": "lm_scale", "wdpenalty": "word_penalty"}
    found = {v: float(header[k]) for k, v in keys.items() if k in header}  # type: ignore[arg-type]
    if not found:
        return None
    return {"am_scale": 1.0, "lm_scale": 1.0, "word_penalty": 0.0, **found}


def posterior_scales(scales: Sequence[Tuple[float, float, float]]) -> List[Tuple[float, float, float]]:
    """Scales for *posteriors* (confidences, MBR): the decoding scales divided by the LM scale, i.e.
    acoustic scale ``1/LMWT`` and LM scale 1, as Kaldi computes them (``lattice-mbr-decode
    --acoustic-scale``, ``lattice-to-ctm-conf``). The best path is the same; posteriors are the
    lattice's word probabilities, not the far sharper ones of ``exp(am + LMWT·lm)``."""
    return [(a / lm, 1.0, p / lm) if lm > 0 else (a, lm, p) for a, lm, p in scales]


class DefaultScalesWarning(UserWarning):
    """Neither scale was given and the lattices declare none: the default 1/1 is rarely right."""


DEFAULT_LM_SCALE_ADVICE = (
    "no --lm-scale or --am-scale given and the lattice headers declare none (SLF lmscale=, acscale=): "
    "using LM scale 1 against acoustic scale 1, which is rarely right (pocketsphinx and Kaldi lattices usually "
    "want an LM scale near 10 against acoustic scale 1, or Kaldi's acoustic scale 0.1 against LM scale 1); tune "
    "them on a dev set with references (afp-rescore --lm-scales 5,10,15 --ref dev.txt) and pass --lm-scale/--word-penalty")


def warn_if_default_lm_scale(origins: List[str]) -> None:
    """Warn (:class:`DefaultScalesWarning`) when any utterance's acoustic and LM scales both fell
    back to the default (one given scale sets their ratio, which is what matters)."""
    if any("am from default" in o and "lm from default" in o for o in origins):  # one message per job
        warnings.warn(DEFAULT_LM_SCALE_ADVICE, DefaultScalesWarning, stacklevel=2)


def resolve_scales(
    headers: List[Dict[str, object]], am_scale: Optional[float], lm_scale: Optional[float], word_penalty: Optional[float]
) -> Tuple[List[Tuple[float, float, float]], List[str]]:
    """Per utterance ``(am_scale, lm_scale, word_penalty)``: a given value wins, then the lattice
    header (SLF ``acscale``/``lmscale``/``wdpenalty``), then 1/1/0.

    Returns:
        ``(scales [utt], origins [utt])``, each origin like ``"am from option, lm from header, wp from default"``.
    """
    names = {"am_scale": "acscale", "lm_scale": "lmscale", "word_penalty": "wdpenalty"}
    scales, origins = [], []
    for header in headers:
        declared = header_scales(header) or {}
        values, origin = [], []
        for given, key, default in ((am_scale, "am_scale", 1.0), (lm_scale, "lm_scale", 1.0), (word_penalty, "word_penalty", 0.0)):
            if given is not None:
                values.append(float(given))
                origin.append("option")
            elif names[key] in header:
                values.append(float(declared[key]))
                origin.append("header")
            else:
                values.append(default)
                origin.append("default")
        scales.append((values[0], values[1], values[2]))
        origins.append(", ".join(f"{k} from {o}" for k, o in zip(("am", "lm", "wp"), origin)))
    return scales, origins
