"""``afp-lattice prune``: beam-prune lattices at their scales (Kaldi's ``lattice-prune``)."""

import click

from lattices.cli.common import LatticeInputs, finish, lattice_inputs, load, resolve_scales, scale_options, wrap_errors
from lattices.lattice_batch import LatticeBatch, scale_headers
from lattices.posteriors import prune_at_scales
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
        fsas, _ = prune_at_scales(batch.fsas, scales, beam)
        write_lattices(LatticeBatch(fsas, batch.utt_ids, batch.symbols, scale_headers(batch.headers, scales)), out, to_fmt)
        click.echo(f"pruned {len(batch)} lattice(s) at beam {beam:g}: {batch.fsas.num_arcs} -> {fsas.num_arcs} arcs: {out}", err=True)
    finish(problems)
