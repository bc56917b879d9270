"""``afp-lattice draw``: render one utterance's lattice with graphviz."""
from typing import Optional

import click

from lattices.cli.common import LatticeInputs, finish, lattice_inputs, load_batches, resolve_scales, scale_options, wrap_errors
from lattices.draw import FORMATS, draw_lattice, find_utterance


@click.command()
@click.argument("utt")
@lattice_inputs
@click.option("-o", "--out", type=click.Path(dir_okay=False), required=True,
              help=f"Output file; format from the suffix ({', '.join(FORMATS)}).")
@scale_options
@click.option("--beam", type=float, default=None, help="Prune arcs whose best path is more than BEAM below the best first.")
@click.option("--max-arcs", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Refuse to draw bigger lattices (use --beam to prune them).")
@wrap_errors
def draw(utt: str, inputs: LatticeInputs, out: str, am_scale: Optional[float],
         lm_scale: Optional[float], word_penalty: Optional[float],
         beam: Optional[float], max_arcs: int) -> None:
    """Draw lattice UTT found in LATTICES (best path in red, epsilons dashed)."""
    from lattices.lattice_batch import with_scales
    from lattices.posteriors import prune
    from lattices.validate import select_lattices

    batch, problems = None, []
    for found, batch_problems in load_batches(inputs, keep=lambda u: u == utt):  # only UTT is parsed
        problems += batch_problems
        batch = batch or (found if utt in found.utt_ids else None)
    i = None if batch is None else find_utterance(batch.utt_ids, utt)
    if batch is None or i is None:
        bad = [p for p in problems if p.source.endswith(":" + utt) or p.source == utt]
        finish(bad or problems)
        raise click.ClickException(f"utterance {utt!r} not found in {', '.join(inputs.paths)}")
    fsas = select_lattices(batch.fsas, [i])
    am_s, lm_s, wp = resolve_scales(batch, am_scale, lm_scale, word_penalty)[i]
    if beam is not None:
        scored = with_scales(fsas, am_s, lm_s, wp)
        fsas, report = prune(scored, beam=beam)
        click.echo(f"beam {beam:g}: kept {report.arcs_after[0]} of {report.arcs_before[0]} arcs", err=True)
    num_arcs = fsas.arcs.values().shape[0]
    if num_arcs > max_arcs:
        raise click.ClickException(f"{utt}: {num_arcs} arcs > --max-arcs {max_arcs}; prune with --beam")
    draw_lattice(fsas, 0, batch.symbols, out, title=utt, am_scale=am_s, lm_scale=lm_s, word_penalty=wp)
    click.echo(f"wrote {out} ({num_arcs} arcs)", err=True)
