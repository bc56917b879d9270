"""``afp-lattice info``: per-utterance size and content of lattices."""
import json
from typing import Optional

import click

from lattices.cli.common import LatticeInputs, finish, lattice_inputs, load, wrap_errors
from lattices.validate import lattice_stats
from models.files import atomic_open

COLUMNS = ("utt", "states", "arcs", "word_arcs", "words", "min_words", "max_words", "depth", "density", "am", "lm", "times")


@click.command()
@lattice_inputs
@click.option("--json", "as_json", is_flag=True, help="Write JSON lines instead of a table.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Output file (default: stdout).")
@wrap_errors
def info(inputs: LatticeInputs, as_json: bool, out: Optional[str]) -> None:
    """Per utterance: states, arcs, word arcs, distinct words, fewest/most words on a path,
    depth (longest path in arcs), Kaldi-style density, and whether am/lm scores and times are present.
    """
    batch, problems = load(inputs)
    rows = lattice_stats(batch)
    if as_json:
        text = "".join(json.dumps(r) + "\n" for r in rows)
    else:
        def cell(v: object) -> str:
            if isinstance(v, bool):
                return "yes" if v else "no"
            return "-" if v is None else str(v)

        lines = ["\t".join(COLUMNS)] + ["\t".join(cell(r[c]) for c in COLUMNS) for r in rows]
        text = "\n".join(lines) + "\n"
    if out:
        with atomic_open(out, "w") as f:
            f.write(text)
    else:
        click.echo(text, nl=False)
    finish(problems)
