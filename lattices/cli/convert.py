"""``afp-lattice convert``: rewrite lattices in another format."""
from contextlib import ExitStack

import click

from lattices.cli.common import LatticeInputs, finish, lattice_inputs, load_batches, wrap_errors
from lattices.writer import WRITE_FORMATS, LatticeSink


@click.command()
@lattice_inputs
@click.option("--to", "to_fmt", type=click.Choice(WRITE_FORMATS), required=True,
              help="Output format (kaldi: binary CompactLattice archive, as Kaldi writes; kaldi-text: ark,t).")
@click.option("--out", type=click.Path(), required=True, help="Output path (file or directory, as the writer expects for the format).")
@click.option("--normalize/--raw", default=False, show_default=True,
              help="Normalise word symbols (drop fillers/sentence markers) or keep them exactly.")
@wrap_errors
def convert(inputs: LatticeInputs, to_fmt: str, out: str, normalize: bool) -> None:
    """Convert LATTICES to another format (k2, HTK SLF, Kaldi binary or text); output is written atomically."""

    problems = []
    with ExitStack() as stack:  # one batch at a time (a k2 file, being one torch.save, is saved at the end)
        sink = LatticeSink(stack, out, to_fmt)
        for batch, batch_problems in load_batches(inputs, raw=not normalize):
            problems += batch_problems
            sink.add(batch)
        sink.close()
    click.echo(f"converted {sink.lattices} lattice(s) to {to_fmt}: {out}", err=True)
    finish(problems)
