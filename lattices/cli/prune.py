"""``afp-lattice prune``: beam-prune lattices at their scales (Kaldi's ``lattice-prune``)."""

import click

from lattices.cli.common import LatticeInputs, finish, lattice_inputs, load, resolve_scales, scale_options, wrap_errors
from lattices.lattice_batch import LatticeBatch, with_utterance_scales
from lattices.posteriors import prune as prune_lattices
from lattices.writer import WRITE_FORMATS, write_lattices


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
    batch, problems = load(inputs)
    if len(batch):
        scales = resolve_scales(batch, am_scale, lm_scale, word_penalty)
        fsas, _ = prune_lattices(with_utterance_scales(batch.fsas, scales), beam=beam)
        fsas.scores = fsas.am_scores + fsas.lm_scores
        headers = [{**h, "acscale": a, "lmscale": s, "wdpenalty": p} for h, (a, s, p) in zip(batch.headers, scales)]
        write_lattices(LatticeBatch(fsas, batch.utt_ids, batch.symbols, headers), out, to_fmt)
        click.echo(f"pruned {len(batch)} lattice(s) at beam {beam:g}: {batch.fsas.num_arcs} -> {fsas.num_arcs} arcs: {out}", err=True)
    finish(problems)
