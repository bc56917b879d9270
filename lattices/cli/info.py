"""``afp-lattice info``: per-utterance size and content of lattices."""
import json
from contextlib import ExitStack
from typing import Optional

import click

from lattices.cli.common import LatticeInputs, finish, lattice_inputs, load_batches, wrap_errors
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
    problems = []
    with ExitStack() as stack:
        f = stack.enter_context(atomic_open(out, "w")) if out else None
        emit = f.write if f is not None else (lambda text: click.echo(text, nl=False))
        if not as_json:
            emit("\t".join(COLUMNS) + "\n")
        for batch, batch_problems in load_batches(inputs):  # one batch at a time: memory does not grow
            problems += batch_problems
            rows = lattice_stats(batch)
            emit("".join(json.dumps(r) + "\n" for r in rows) if as_json else
                 "".join("\t".join(_cell(r[c]) for c in COLUMNS) + "\n" for r in rows))
    finish(problems)


def _cell(v: object) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    return "-" if v is None else str(v)
