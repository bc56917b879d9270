"""``afp-lattice prune``: beam-prune lattices at their scales (Kaldi's ``lattice-prune``)."""
from contextlib import ExitStack

import click

from lattices.cli.common import (LatticeInputs, finish, lattice_inputs, load_batches, report_scales, resolve_scales, scale_options,
                                 wrap_errors)
from lattices.lattice_batch import LatticeBatch, scale_headers
from lattices.posteriors import prune_at_scales
from lattices.writer import WRITE_FORMATS, LatticeSink


@click.command()
@lattice_inputs
@scale_options
@click.option("--beam", type=click.FloatRange(min=0), required=True,
              help="Keep the arcs on a path within this log-score of the best path (at the scales).")
@click.option("--to", "to_fmt", type=click.Choice(WRITE_FORMATS), required=True, help="Output format.")
@click.option("--out", type=click.Path(), required=True, help="Output path (file or directory, as the writer expects).")
@wrap_errors
def prune(inputs: LatticeInputs, am_scale, lm_scale, word_penalty, beam: float, to_fmt: str, out: str) -> None:
    """Prune LATTICES: remove every arc whose best path scores more than BEAM below the best path,
    at the scales given or those in the lattice headers; write them (scores unchanged) to OUT."""
    problems, seen = [], {}
    arcs_in = arcs_out = 0
    with ExitStack() as stack:  # one batch at a time (a k2 file, being one torch.save, is saved at the end)
        sink = LatticeSink(stack, out, to_fmt)
        for batch, batch_problems in load_batches(inputs):
            problems += batch_problems
            if not len(batch):
                continue
            scales = resolve_scales(batch, am_scale, lm_scale, word_penalty, seen)
            fsas, _ = prune_at_scales(batch.fsas, scales, beam)
            sink.add(LatticeBatch(fsas, batch.utt_ids, batch.symbols, scale_headers(batch.headers, scales)))
            arcs_in, arcs_out = arcs_in + batch.fsas.num_arcs, arcs_out + fsas.num_arcs
        sink.close()
    report_scales(seen)
    if sink.lattices:
        click.echo(f"pruned {sink.lattices} lattice(s) at beam {beam:g}: {arcs_in} -> {arcs_out} arcs: {out}", err=True)
    finish(problems)
