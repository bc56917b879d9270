"""``afp-lattice convert``: rewrite lattices in another format."""
from typing import Optional, Tuple

import click

from lattices.cli.common import finish, lattice_inputs, load, wrap_errors


@click.command()
@lattice_inputs
@click.option("--to", "to_fmt", type=click.Choice(["k2", "slf", "kaldi"]), required=True, help="Output format.")
@click.option("--out", type=click.Path(), required=True, help="Output path (file or directory, as the writer expects for the format).")
@click.option("--normalize/--raw", default=False, show_default=True,
              help="Normalise word symbols (drop fillers/sentence markers) or keep them exactly.")
@wrap_errors
def convert(lattices: Tuple[str, ...], fmt: str, words: Optional[str], to_fmt: str, out: str, normalize: bool) -> None:
    """Convert LATTICES to another format (k2, HTK SLF, Kaldi text); output is written atomically."""
    from lattices.writer import write_lattices

    batch, problems = load(lattices, fmt, words, raw=not normalize)
    if len(batch):
        write_lattices(batch, out, to_fmt)
    click.echo(f"converted {len(batch)} lattice(s) to {to_fmt}: {out}", err=True)
    finish(problems)
