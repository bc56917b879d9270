"""``afp-lattice nbest``: exact n-best lists of distinct word sequences."""
import json
import sys
from contextlib import ExitStack
from typing import Optional

import click

from lattices.cli.common import (LatticeInputs, finish, lattice_inputs, load_batches, report_scales, resolve_scales, scale_options,
                                 wrap_errors)
from lattices.ctm import ctm_words, format_ctm
from lattices.lattice_batch import posterior_scales, with_utterance_scales
from lattices.nbest import hypothesis_records
from lattices.nbest import nbest as nbest_lists
from models.files import atomic_open


@click.command()
@click.option("-n", "--nbest", "n", type=click.IntRange(min=1), default=1, show_default=True, help="Hypotheses per utterance.")
@scale_options
@lattice_inputs
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help='JSON lines {"utt","rank","words","total","am","lm"} (default: stdout).')
@click.option("--text", type=click.Path(dir_okay=False), default=None,
              help="Also write the best hypothesis per utterance as Kaldi text (utt-id words).")
@click.option("--ctm", type=click.Path(dir_okay=False), default=None,
              help="Also write the best hypothesis as CTM (utt 1 start duration word confidence); needs word times.")
@wrap_errors
def nbest(n: int, am_scale: Optional[float], lm_scale: Optional[float],
          word_penalty: Optional[float], inputs: LatticeInputs,
          out: Optional[str], text: Optional[str], ctm: Optional[str]) -> None:
    """The N best distinct word sequences per utterance (Viterbi: a sequence scores as its best path).

    total = am_scale*am + lm_scale*lm + word_penalty*words; am and lm are the unscaled
    scores of that best path. Ranks start at 1. The CTM's confidences are word posteriors at
    acoustic scale am_scale/lm_scale and LM scale 1, as Kaldi computes them (see lattices.ctm).
    """
    problems, seen = [], {}
    with ExitStack() as stack:  # every output is written batch by batch and appears (atomically) at the end
        f = stack.enter_context(atomic_open(out, "w")) if out else sys.stdout
        text_f = stack.enter_context(atomic_open(text, "w")) if text else None
        ctm_f = stack.enter_context(atomic_open(ctm, "w")) if ctm else None
        for batch, batch_problems in load_batches(inputs):
            problems += batch_problems
            scales = resolve_scales(batch, am_scale, lm_scale, word_penalty, seen)
            lists = nbest_lists(batch.fsas, n, scales=scales)
            records = hypothesis_records(batch.utt_ids, lists, batch.symbols)
            f.write("".join(json.dumps(r) + "\n" for r in records))
            if text_f is not None:
                text_f.write("".join(f"{r['utt']} {r['words']}".rstrip() + "\n" for r in records if r["rank"] == 1))
            if ctm_f is not None and len(batch):
                if not hasattr(batch.fsas, "end_times"):
                    raise click.ClickException("--ctm: these lattices have no word times (SLF t=, Kaldi transition ids, k2 times)")
                words = ctm_words(with_utterance_scales(batch.fsas, posterior_scales(scales)), batch.utt_ids,
                                  [h[0].words for h in lists], batch.symbols)
                ctm_f.write(format_ctm(words))
    report_scales(seen)
    finish(problems)
