"""``afp-lattice``: inspect, convert, prune, n-best, oracle-score and draw word lattices.

Each subcommand lives in its own module and calls one library function; shared options are in
:mod:`lattices.cli.common`. Batch behaviour: a bad file or utterance is reported on stderr as
``source: message``, the rest is processed, and the exit status is 1 at the end.
"""
from typing import List, Optional

import click

from lattices.cli.common import plain_warnings
from lattices.cli.convert import convert
from lattices.cli.draw import draw
from lattices.cli.info import info
from lattices.cli.nbest import nbest
from lattices.cli.oracle import oracle
from lattices.cli.prune import prune


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Word-lattice tools for afp-rescore (k2 FsaVecs; HTK SLF, Kaldi and k2 formats)."""


for _command in (info, convert, prune, nbest, oracle, draw):
    cli.add_command(_command)


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry point (``afp-lattice = lattices.cli:main``); exits with the command's status."""
    plain_warnings()
    return cli.main(args=argv, prog_name="afp-lattice")
