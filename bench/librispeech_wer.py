"""Real-speech WER benchmark (issue 5): pocketsphinx LibriSpeech lattices + 3-gram + AFP / BPTT LMs.

    OMP_NUM_THREADS=1 .venv/bin/python bench/librispeech_wer.py --lats exp/librispeech/lats \\
        --ref exp/librispeech/ref.txt --hyp exp/librispeech/hyp.txt --ngram exp/ngram/en-us.arpa.gz \\
        --afp exp/bench-librispeech/lm/afp4/model.pt [--afp ...] --bptt exp/bench-librispeech/lm/bptt/model.pt \\
        --out exp/bench-librispeech/wer

Systems (rows of ``OUT/table.md``):

- ``pocketsphinx 1-best``: the recognizer's own output (``--hyp``).
- ``lattice + 3-gram at the recognizer's scales``: the first-pass lattice below, searched at
  ``--first-pass-scales`` without tuning (first-pass parity).
- ``lattice + 3-gram``: every lattice expanded to 2-word histories and scored with the ARPA 3-gram
  (:func:`rescore.pipeline.rescore_batch`, ``interpolate=1``). This is the first-pass lattice of
  every later row, as in Kaldi's ``lmrescore`` then RNNLM rescoring.
- ``lattice + 3-gram + AFP-K``: that lattice expanded to unique K-word histories and scored with
  the AFP-K model in one pass; lm = (1 - w)·3-gram + w·AFP. ``lattice + AFP-K alone`` is w = 1.
- ``... , MBR``: the same rescored lattice and the same tuned scales, decoded with lattice MBR
  (:mod:`lattices.mbr`, ``afp-rescore --decode mbr``) instead of the best path.
- ``lattice + 3-gram + AFP-K self-normalised``: the same with an AFP-K model trained with
  ``--self-norm`` (``--afp-self-norm``), scored without the softmax normaliser (``--no-normalize``).
- ``AFP-K model run exact, exact N-best``: the exact N-best list of the 3-gram lattice rescored by
  that same AFP-K model run with full history (``afp-rescore --method nbest-exact``); for a
  self-normalised model without the normaliser too (``--no-normalize``).
- ``..., beam B``: with several ``--beam``, the AFP and N-best rows are repeated on the 3-gram
  lattice pruned again to each narrower beam (``afp-lattice prune``; its time is counted in
  those rows).
- ``BPTT LSTM, exact N-best``: the exact N-best list of the 3-gram lattice rescored by the same-size
  LSTM trained with BPTT, run with full history.
- ``lattice oracle``: the best word sequence in the original lattices.

Tuning is 2-fold by speaker (the 5 lowest speaker ids vs the rest): for the utterances of one fold
the LM scale, word penalty (and w) are those that minimise the errors on the *other* fold; the
reported WER adds the errors of both folds. The scales tuned for the 3-gram row (on the other fold)
also set the beam that prunes the AFP expansions and the N-best search of the 3-gram lattice.
Seconds are the rescoring stage of that row only (expansion + LM + search, or N-best + LM; neither
computes a CTM);
arcs/s = arcs of the lattices that stage read / seconds. Stage results are cached in ``OUT/cache``.

Every AFP row of an LM (and its other N-best rows) is tested against that LM's exact
``--compare-nbest`` row on the same lattices by the paired bootstrap over utterances
(:func:`rescore.wer.paired_bootstrap`): the WER difference, its 95 % interval and the probability
that the row is better.
"""
import json
import math
import os
import time
from dataclasses import dataclass
from itertools import product
from typing import Dict, List, Optional, Sequence, Tuple

import click
import k2
import numpy as np
import torch

from lattices.lattice_batch import LatticeBatch, posterior_scales, with_utterance_scales
from lattices.mbr import mbr_decode
from lattices.validate import arc_arrays
from lattices.nbest import nbest
from lattices.oracle import oracle_wer
from models.files import read_references
from lattices.posteriors import prune_at_scales
from lattices.reader import read_lattices
from models.files import atomic_open
from models.scoring import pad_sequences, sentence_log_probs
from rescore.pipeline import RescoreOptions, rescore_batch
from rescore.scorers import Scorer, lm_ids_for_symbols, load_scorer
from rescore.tune import grid_errors, utterance_errors
from rescore.wer import paired_bootstrap

LM_SCALES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0)
PENALTIES = (-24.0, -20.0, -16.0, -12.0, -8.0, -4.0, 0.0, 4.0)
WEIGHTS = (0.25, 0.5, 0.75)
Params = Tuple[float, float, float]  # (lm_scale, word_penalty, w)


@dataclass
class Row:
    name: str
    errors: int
    seconds: Optional[float] = None
    arcs: Optional[int] = None
    chosen: Optional[List[Params]] = None  # per fold
    note: str = ""
    utt_errors: Optional[List[int]] = None  # [utt], for the paired bootstrap
    vs: Optional[str] = None  # name of the row this one is tested against


def lattice_grid(cache: str, lats: LatticeBatch, weights: Sequence[float], refs) -> Tuple[List[Params], np.ndarray]:
    """Errors ``[grid][utt]`` of the 1-best of the rescored lattices at every (lm_scale,
    word_penalty, w), by :func:`rescore.tune.grid_errors` (the search of ``afp-tune``), cached in
    ``cache`` (a ``.json`` file)."""
    if os.path.exists(cache):
        saved = json.load(open(cache))
        return [tuple(g) for g in saved["grid"]], np.array(saved["errors"])
    grid = list(product(LM_SCALES, PENALTIES, weights))
    errs = grid_errors(lats.fsas, refs, lats.symbols, 1.0, grid)
    with atomic_open(cache) as f:
        json.dump({"grid": grid, "errors": errs.tolist()}, f)
    return grid, errs


def mbr_errors(lats: LatticeBatch, new: Optional[str], per_utt: Sequence[Params], refs) -> Tuple[np.ndarray, float, Dict]:
    """``[utt]`` errors of the lattice-MBR decision at each utterance's tuned (lm_scale, wp, w), the
    seconds MBR took (the Viterbi start included) and the summed expected losses."""
    fsas = lats.fsas.clone()
    old = (fsas.old_lm_scores if new else fsas.lm_scores).double()
    if new:
        w = torch.tensor([p[2] for p in per_utt], dtype=torch.float64)[torch.from_numpy(arc_arrays(fsas).fsa_of_arc)]
        fsas.lm_scores = ((1 - w) * old + w * getattr(fsas, new).double()).float()
    scales = [(1.0, s, p) for s, p, _ in per_utt]
    t0 = time.perf_counter()
    viterbi = [h[0].words for h in nbest(fsas, 1, scales=scales)]
    decided = mbr_decode(with_utterance_scales(fsas, posterior_scales(scales)), viterbi)
    seconds = time.perf_counter() - t0
    hyps = [[lats.symbols.get(x) for x in m.words] for m in decided]
    return utterance_errors(refs, hyps), seconds, {"mbr": sum(m.expected_errors for m in decided),
                                             "viterbi": sum(m.viterbi_expected_errors for m in decided)}


def mbr_row(lats: LatticeBatch, new: Optional[str], per_utt: Sequence[Params], refs, chosen, name: str) -> Row:
    errs, seconds, loss = mbr_errors(lats, new, per_utt, refs)
    return Row(name, int(errs.sum()), seconds, int(lats.fsas.num_arcs), chosen,
               f"MBR decoding only (the rescoring is the row above); expected errors {loss['mbr']:.1f} vs "
               f"{loss['viterbi']:.1f} for the best path; scales tuned for the best path", errs.tolist())


def two_fold(grid: List[Params], errs: np.ndarray, fold: np.ndarray) -> Tuple[List[int], List[Params], List[Params]]:
    """``[utt]`` errors with each fold's parameters tuned on the other fold; the chosen parameters
    per fold and per utterance."""
    utt_errors, chosen, per_utt = [0] * len(fold), [], [grid[0]] * len(fold)
    for f in (0, 1):
        g = int(np.argmin(errs[:, fold != f].sum(1)))  # first minimum: grid order breaks ties
        chosen.append(grid[g])
        for u in np.flatnonzero(fold == f):
            per_utt[u], utt_errors[u] = grid[g], int(errs[g, u])
    return utt_errors, chosen, per_utt


def cached_rescore(cache: str, batch: LatticeBatch, scorer: Scorer, scales, opts: RescoreOptions) -> Tuple[LatticeBatch, Dict]:
    """:func:`rescore_batch` (kept lattices + stats), cached in ``cache`` (a ``.pt`` file)."""
    if os.path.exists(cache):
        saved = torch.load(cache)
        return LatticeBatch(k2.Fsa.from_dict(saved["fsas"]), saved["utt_ids"], batch.symbols), saved["stats"]
    out = rescore_batch(batch, scorer, scales, opts)
    if out.failures:
        raise SystemExit(f"{scorer.name}: {len(out.failures)} utterances failed: {out.failures[:3]}")
    stats = {**out.stats, "arcs_in": int(batch.fsas.num_arcs), "pruned": len(out.pruned)}
    torch.save({"fsas": out.lattices.fsas.as_dict(), "utt_ids": out.utt_ids, "stats": stats}, cache + ".tmp")
    os.replace(cache + ".tmp", cache)
    return out.lattices, stats


def nbest_rows(lats: LatticeBatch, bptt: Scorer, scales, n: int, refs) -> Tuple[List[Params], np.ndarray, Dict]:
    """Exact n-best lists of the 3-gram lattices rescored with the full-history LSTM (without the
    normaliser when ``bptt.normalize`` is False): errors per grid point and utterance, and the time
    it took (search and LM apart)."""
    t0 = time.perf_counter()
    lists = nbest(lats.fsas, n, scales=[(1.0, s, p) for s, p, _ in scales])
    t1 = time.perf_counter()
    lm_ids = lm_ids_for_symbols(lats.symbols, bptt.vocab).tolist()
    flat = [(u, h) for u, hs in enumerate(lists) for h in hs]
    lstm = sentence_log_probs(bptt.model, [[lm_ids[w] for w in h.words] for _, h in flat], bptt.vocab.bos_id,
                              bptt.vocab.eos_id, mode="exact", normalize=bptt.normalize,
                              log_norm_offset=bptt.log_norm_offset).numpy()
    seconds = time.perf_counter() - t0
    utt = np.array([u for u, _ in flat])
    am, lm3 = np.array([h.am for _, h in flat]), np.array([h.lm for _, h in flat])
    nw = np.array([len(h.words) for _, h in flat])
    hyp_err = utterance_errors([refs[u] for u in utt], [[lats.symbols.get(w) for w in h.words] for _, h in flat])
    starts = np.flatnonzero(np.r_[True, utt[1:] != utt[:-1]])
    grid, errs = [], []
    for s, p, w in product(LM_SCALES, PENALTIES, WEIGHTS):
        total = am + s * ((1 - w) * lm3 + w * lstm) + p * nw
        best = [b + int(np.argmax(total[b:e])) for b, e in zip(starts, np.r_[starts[1:], len(utt)])]
        grid.append((s, p, w))
        errs.append(hyp_err[best])
    oracle = int(sum(hyp_err[b:e].min() for b, e in zip(starts, np.r_[starts[1:], len(utt)])))
    return grid, np.stack(errs), {"seconds": seconds, "search_seconds": t1 - t0, "hypotheses": len(flat),
                                  "oracle_errors": oracle}


def nbest_row(cache: str, lats: LatticeBatch, scorer: Scorer, scales, n: int, refs, fold: np.ndarray, name: str,
              ref_words: int, vs: Optional[str] = None, prune_seconds: float = 0.0) -> Row:
    """The 2-fold tuned row of :func:`nbest_rows`, cached in ``cache`` (a ``.json`` file), tested
    against the row named ``vs``; ``prune_seconds`` is added to its seconds."""
    if os.path.exists(cache):
        saved = json.load(open(cache))
        grid, errs, st = [tuple(g) for g in saved["grid"]], np.array(saved["errors"]), saved["stats"]
    else:
        grid, errs, st = nbest_rows(lats, scorer, scales, n, refs)
        with atomic_open(cache) as f:
            json.dump({"grid": grid, "errors": errs.tolist(), "stats": st}, f)
    utt_errors, chosen, _ = two_fold(grid, errs, fold)
    split = (f"{_pruned(prune_seconds)}search {st['search_seconds']:.1f} s, "
             f"LM {st['seconds'] - st['search_seconds']:.1f} s; " if "search_seconds" in st else "")
    return Row(name, sum(utt_errors), st["seconds"] + prune_seconds, int(lats.fsas.num_arcs), chosen,
               f"{split}{st['hypotheses']} hypotheses; {n}-best oracle {100 * st['oracle_errors'] / ref_words:.2f}%",
               utt_errors, vs)


@torch.no_grad()
def token_log_probs(scorer: Scorer, sentence: Sequence[int]) -> np.ndarray:
    """``log P(w_t | history)`` of every word and ``</s>`` of one sentence of ids."""
    vocab = scorer.vocab
    tokens = [vocab.bos_id, *sentence, vocab.eos_id]
    if scorer.ngram is not None:
        k = scorer.ngram.order - 1
        hist, lengths = pad_sequences([tokens[max(0, t - k) : t] for t in range(1, len(tokens))], 0)
        n = len(tokens) - 1
        return scorer.ngram.score(hist, lengths, torch.arange(n), torch.tensor(tokens[1:])).double().numpy()
    model = scorer.model
    device = model.output.weight.device
    model.eval()
    nll = model.token_nll(torch.tensor([tokens[:-1]], device=device), torch.tensor([tokens[1:]], device=device))
    return -nll[0].double().cpu().numpy()


def perplexity(scorer: Scorer, refs: Sequence[Sequence[str]]) -> Dict[str, float]:
    """Perplexity over the in-vocabulary words and ``</s>`` of the reference sentences (OOV words
    are skipped, as SRILM does; their rate is reported beside it)."""
    vocab = scorer.vocab
    logp, tokens, oov, words = 0.0, 0, 0, 0
    for ref in refs:
        ids = vocab.encode([w.lower() for w in ref])
        known = np.array([i != vocab.unk_id for i in ids] + [True])
        logp += float(token_log_probs(scorer, ids)[known].sum())
        tokens += int(known.sum())
        oov += len(ids) + 1 - int(known.sum())
        words += len(ids)
    return {"ppl": math.exp(-logp / tokens), "oov_rate": oov / words, "vocab": len(vocab)}


@click.command(context_settings={"show_default": True})
@click.option("--lats", required=True, type=click.Path(exists=True), help="Lattice directory/files (pocketsphinx SLF).")
@click.option("--ref", required=True, type=click.Path(exists=True, dir_okay=False), help="References (Kaldi text).")
@click.option("--hyp", required=True, type=click.Path(exists=True, dir_okay=False), help="pocketsphinx's own 1-best.")
@click.option("--ngram", required=True, type=click.Path(exists=True, dir_okay=False), help="ARPA 3-gram (first-pass LM).")
@click.option("--afp", "afps", multiple=True, type=click.Path(exists=True, dir_okay=False), help="AFP-K checkpoints.")
@click.option("--afp-self-norm", "afps_self_norm", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Self-normalised AFP-K checkpoints (afp-train-lm --self-norm), scored without the normaliser.")
@click.option("--bptt", type=click.Path(exists=True, dir_okay=False), help="Same-size BPTT LSTM checkpoint (N-best row).")
@click.option("--nbest", "ns", default="100,1000", help="Comma-separated N of the exact N-best baselines (one row each; 0 for none).")
@click.option("--first-pass-scales", default="9.5,-0.63",
              help="LM scale and word penalty at which the 3-gram expansion is pruned to --ngram-max-arcs "
                   "(default: pocketsphinx's own -bestpathlw and -wip).")
@click.option("--max-arcs", "max_arcs_list", default="200000",
              help="Per-utterance bound on arcs of the AFP expansions (beam-pruned beyond); comma-separated for one "
                   "row per bound (a WER-against-time curve).")
@click.option("--ngram-max-arcs", default=1000000, help="The same bound for the 3-gram expansion (beam-pruned at --first-pass-scales with the LM look-ahead).")
@click.option("--beam", "beams", default="150",
              help="Beam (scaled log score) pruning the 3-gram lattice before the neural LMs; comma-separated for AFP "
                   "rows at each beam (the first, the widest, is also the input of the N-best rows; the seconds of "
                   "an AFP row at a narrower beam include pruning to it).")
@click.option("--compare-nbest", "compare", default=100,
              help="Every AFP row (and the other N-best rows) of an LM is tested against that LM's exact N-best at this N "
                   "(paired bootstrap over utterances), when it is one of --nbest.")
@click.option("--device", default="cpu", help="Device of the neural LMs.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory (results.json, table.md, cache/).")
def main(lats, ref, hyp, ngram, afps, afps_self_norm, bptt, ns, first_pass_scales, max_arcs_list, ngram_max_arcs, beams,
         compare, device, out) -> None:
    """2-fold tuned WER of every system on the LibriSpeech lattices."""
    ns = [int(x) for x in ns.split(",") if x.strip() and int(x) > 0]
    bounds = [int(x) for x in max_arcs_list.split(",")]
    beams = [float(x) for x in beams.split(",")]
    beam = beams[0]
    if any(b > beam or b < 0 for b in beams):
        raise click.BadParameter(f"{beams}: the first beam must be the widest, and none negative", param_hint="--beam")
    os.makedirs(os.path.join(out, "cache"), exist_ok=True)
    batch, failures = read_lattices([lats])
    if failures:
        raise SystemExit(f"{len(failures)} lattices could not be read: {failures[:3]}")
    all_refs = read_references(ref)
    refs = [all_refs[u] for u in batch.utt_ids]
    ref_words = sum(len(r) for r in refs)
    speakers = sorted({u.split("-")[0] for u in batch.utt_ids})
    fold = np.array([int(u.split("-")[0] in speakers[len(speakers) // 2:]) for u in batch.utt_ids])
    rows: List[Row] = []
    ps = read_references(hyp)
    rows.append(Row("pocketsphinx 1-best", int(utterance_errors(refs, [ps.get(u, []) for u in batch.utt_ids]).sum())))

    trigram = load_scorer(ngram)
    lm_info = {"3-gram": perplexity(trigram, refs)}
    opts = RescoreOptions(interpolate=1.0, order=trigram.context, nbest=1, max_arcs=ngram_max_arcs, keep_lattices=True, ctm=False)
    fp_lm_scale, fp_wp = (float(x) for x in first_pass_scales.split(","))
    l3, st = cached_rescore(os.path.join(out, "cache", "3gram.pt"), batch, trigram, [(1.0, fp_lm_scale, fp_wp)] * len(batch), opts)
    assert l3.utt_ids == batch.utt_ids
    grid, errs = lattice_grid(os.path.join(out, "cache", "3gram-grid.json"), l3, (1.0,), refs)
    parity = grid_errors(l3.fsas, refs, l3.symbols, 1.0, [(fp_lm_scale, fp_wp, 1.0)])[0]
    rows.append(Row(f"lattice + 3-gram at the recognizer's scales ({fp_lm_scale:g}, {fp_wp:g}), untuned", int(parity.sum()),
                    st["seconds"], st["arcs_in"], note="first-pass parity"))
    utt_errors, chosen, tuned = two_fold(grid, errs, fold)
    rows.append(Row("lattice + 3-gram", sum(utt_errors), st["seconds"], st["arcs_in"], chosen, f"{st['pruned']} utts pruned",
                    utt_errors))
    scales3 = [(1.0, s, p) for s, p, _ in tuned]  # per utterance, tuned on the other fold
    first_pass, kept = prune_at_scales(l3.fsas, scales3, beam)  # as lattice-prune after lmrescore
    l3 = LatticeBatch(first_pass, l3.utt_ids, l3.symbols)
    _, pruned_oracle = oracle_wer(first_pass, l3.symbols, refs)
    rows.append(Row(f"3-gram lattice pruned to beam {beam:g}: oracle", pruned_oracle.errors,
                    note=f"{sum(kept.arcs_after)} of {sum(kept.arcs_before)} arcs kept; input of the rows below"))
    rows.append(mbr_row(l3, None, tuned, refs, chosen, f"lattice + 3-gram (pruned to beam {beam:g}), MBR"))

    for path, normalize in [(p, True) for p in afps] + [(p, False) for p in afps_self_norm]:
        afp = load_scorer(path, device, normalize=normalize)
        run = os.path.basename(os.path.dirname(os.path.abspath(path)))  # afpK, small-afpK, ...: names the model
        label = "" if run in (f"afp{afp.context}", f"afp{afp.context}sn") else f" [{run}]"
        name = f"AFP-{afp.context}{label}" + ("" if normalize else " self-normalised, no normaliser")
        lm_info[name] = perplexity(load_scorer(path, device), refs)
        tag = (f"afp{afp.context}" if not label else run) + ("" if normalize else "-selfnorm")
        # the same model run with full history on the exact N-best of the same lattices (without the
        # normaliser too for a self-normalised model, as afp-rescore --method nbest-exact --no-normalize)
        exact = (f"lattice + 3-gram + AFP-{afp.context}{label} model{'' if normalize else ' (self-normalised, no normaliser)'} "
                 f"run exact, exact {{}}-best")
        for b in beams:
            lb, prune_seconds = narrower(l3, scales3, b) if b != beam else (l3, 0.0)
            at = f", beam {b:g}" if len(beams) > 1 else ""
            vs = exact.format(compare) + at if compare in ns else None
            for max_arcs in bounds:
                bound = f", --max-arcs {max_arcs}" if len(bounds) > 1 else ""
                rows += afp_rows(out, f"{tag}-beam{b:g}" + (f"-arcs{max_arcs}" if bound else ""), name + at + bound, lb,
                                 afp, scales3, tuned, refs, fold, max_arcs, prune_seconds, vs)
            rows += [nbest_row(os.path.join(out, "cache", f"{tag}-beam{b:g}-{n}best.json"), lb, afp, tuned, n, refs, fold,
                               exact.format(n) + at, ref_words, vs if n != compare else None, prune_seconds) for n in ns]

    if bptt:
        lstm = load_scorer(bptt, device)
        bptt_run = os.path.basename(os.path.dirname(os.path.abspath(bptt)))
        lm_info["BPTT"] = perplexity(lstm, refs)
        rows += [nbest_row(os.path.join(out, "cache", f"bptt-{bptt_run}-{n}best.json"), l3, lstm, tuned, n, refs, fold,
                           f"lattice + 3-gram + BPTT LSTM, exact {n}-best", ref_words) for n in ns]

    _, summary = oracle_wer(batch.fsas, batch.symbols, refs)
    rows.append(Row("lattice oracle", summary.errors))
    write_results(out, rows, [len(r) for r in refs], lm_info, device, compare)


def _pruned(seconds: float) -> str:
    """The note's words for the narrower beam's pruning time (none at the widest beam)."""
    return f"prune {seconds:.1f} s, " if seconds else ""


def narrower(l3: LatticeBatch, scales3, beam: float) -> Tuple[LatticeBatch, float]:
    """The 3-gram lattices pruned again, to ``beam`` (as ``afp-lattice prune``), and the seconds it took."""
    t0 = time.perf_counter()
    fsas, _ = prune_at_scales(l3.fsas, scales3, beam)
    return LatticeBatch(fsas, l3.utt_ids, l3.symbols), time.perf_counter() - t0


def afp_rows(out: str, tag: str, name: str, l3: LatticeBatch, afp: Scorer, scales3, tuned, refs, fold, max_arcs: int,
             prune_seconds: float = 0.0, vs: Optional[str] = None) -> List[Row]:
    """The rows of one AFP model at one ``max_arcs``: interpolated with the 3-gram (Viterbi and MBR),
    and alone; cached in ``OUT/cache/TAG*``. ``prune_seconds`` (the narrower beam's pruning) is
    added to the rescoring seconds; every row is tested against the row named ``vs``."""
    opts = RescoreOptions(interpolate=0.5, nbest=1, max_arcs=max_arcs, max_batch=8192, keep_lattices=True, ctm=False)
    la, st = cached_rescore(os.path.join(out, "cache", f"{tag}.pt"), l3, afp, scales3, opts)
    assert la.utt_ids == l3.utt_ids, "an utterance is missing from the AFP expansion"
    grid, errs = lattice_grid(os.path.join(out, "cache", f"{tag}-grid.json"), la, WEIGHTS + (1.0,), refs)
    seconds = st["seconds"] + prune_seconds
    note = (f"{st['arcs_after_expansion']} expanded arcs, {st['distinct_histories']} histories, "
            f"{st.get('cell_steps', 0) / max(st['distinct_histories'], 1):.2f} cell steps/history, {st['pruned']} utts pruned; "
            f"{_pruned(prune_seconds)}"
            f"expand {st['expand_seconds']:.1f} s, LM {st['lm_seconds']:.1f} s, search {st['search_seconds']:.1f} s")
    mixed = [g for g, p in enumerate(grid) if p[2] < 1.0]
    alone = [g for g, p in enumerate(grid) if p[2] == 1.0]
    utt_errors, chosen, per_utt = two_fold([grid[g] for g in mixed], errs[mixed], fold)
    rows = [Row(f"lattice + 3-gram + {name}", sum(utt_errors), seconds, st["arcs_in"], chosen, note, utt_errors),
            mbr_row(la, "afp_lm_scores", per_utt, refs, chosen, f"lattice + 3-gram + {name}, MBR")]
    utt_errors, chosen, _ = two_fold([grid[g] for g in alone], errs[alone], fold)
    rows.append(Row(f"lattice + {name} alone", sum(utt_errors), seconds, st["arcs_in"], chosen, note, utt_errors))
    for r in rows:
        r.vs = vs
    return rows


def significance(row: Row, rows: List[Row], utt_words: Sequence[int]) -> str:
    """``row`` against the row it names in ``vs``, by the paired bootstrap over utterances: the WER
    difference in points, its 95 % interval and the probability that ``row`` is better."""
    base = next((r for r in rows if r.name == row.vs), None)
    if base is None or row.utt_errors is None or base.utt_errors is None:
        return "—"
    b = paired_bootstrap(base.utt_errors, row.utt_errors, utt_words)
    return f"{100 * b.delta:+.2f} [{100 * b.low:+.2f}, {100 * b.high:+.2f}], {b.p_better:.2f}"


def write_results(out: str, rows: List[Row], utt_words: Sequence[int], lm_info: Dict, device: str, compare: int) -> None:
    base, ref_words = rows[0].errors, sum(utt_words)
    lines = ["| system | WER % | rel. vs pocketsphinx | seconds | arcs/s | device | tuned (lm scale, wp, w) fold A / B "
             f"| vs exact {compare}-best of that LM: Δ WER points [95 % interval], P(better) | notes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rel = f"{100 * (r.errors - base) / base:+.1f}%"
        secs = f"{r.seconds:.1f}" if r.seconds is not None else "—"
        rate = f"{r.arcs / r.seconds:,.0f}" if r.seconds else "—"
        dev = device if r.seconds is not None else "—"
        tuned = " / ".join(f"({s:g}, {p:g}, {w:g})" for s, p, w in r.chosen) if r.chosen else "—"
        lines.append(f"| {r.name} | {100 * r.errors / ref_words:.2f} | {rel} | {secs} | {rate} | {dev} | {tuned} "
                     f"| {significance(r, rows, utt_words)} | {r.note} |")
    lines += ["", "| LM | perplexity on the 100 references | OOV rate | vocabulary |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['ppl']:.1f} | {100 * v['oov_rate']:.2f}% | {v['vocab']} |" for k, v in lm_info.items()]
    with atomic_open(os.path.join(out, "table.md")) as f:
        f.write("\n".join(lines) + "\n")
    with atomic_open(os.path.join(out, "results.json")) as f:
        json.dump({"ref_words": ref_words, "rows": [r.__dict__ for r in rows], "lms": lm_info}, f, indent=2)
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
