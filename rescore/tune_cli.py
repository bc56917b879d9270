"""``afp-tune``: tune LM scale, word penalty and interpolation weight on a dev set; write scales.json."""
import sys

import click

from .cli import comma_floats, job_options
from .outputs import failure_line
from .pipeline import RescoreOptions
from .run import RunOptions
from .tune import DEFAULT_LM_SCALES, DEFAULT_PENALTIES, DEFAULT_WEIGHTS, penalties_of, tune, write_scales

INPUT = click.Path(exists=True, dir_okay=False)


def _grid(values) -> str:
    return ",".join(f"{v:g}" for v in values)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@job_options
@click.option("--ref", required=True, type=INPUT, help="References of the dev set (Kaldi text or lhotse supervisions).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The scales.json to write.")
@click.option("--am-scale", type=float, default=1.0, help="Acoustic scale (kept fixed: the other scales are relative to it).")
@click.option("--lm-scales", callback=comma_floats, default=_grid(DEFAULT_LM_SCALES), help="LM scales to try.")
@click.option("--word-penalties", callback=comma_floats, default=_grid(DEFAULT_PENALTIES), help="Word penalties to try.")
@click.option("--weights", callback=comma_floats, default=_grid(DEFAULT_WEIGHTS),
              help="Interpolation weights w of the new LM to try (1 replaces the lattices' LM scores).")
@click.option("--prune-lm-scale", type=float, default=10.0,
              help="LM scale of the beam that keeps over-large expansions within --max-arcs (first round).")
@click.option("--prune-word-penalty", type=float, default=0.0,
              help="Word penalty of that beam (first round; later rounds prune at the previous round's best).")
@click.option("--rounds", type=click.IntRange(min=1), default=2,
              help="Rescoring rounds: each prunes at the previous round's best scales and searches the grid again.")
def tune_command(lattices, lm, old_lm, ref, out, fmt, words, rules, am_scale, lm_scales, word_penalties, weights, prune_lm_scale,
                 prune_word_penalty, rounds, iterations, max_arcs, first_pass_beam, first_pass_max_arcs, lookahead, batch_arcs, device, normalize, unk) -> None:
    """Rescore the dev-set LATTICES once and grid-search the LM scale, word penalty and
    interpolation weight on the same scored lattices; write the best as OUT (scales.json, for
    afp-rescore --scales)."""
    opts = RunOptions(lattices=list(lattices), lm=lm, old_lm=old_lm, out=out, fmt=fmt, words=words, am_scale=am_scale,
                      lm_scale=prune_lm_scale, word_penalty=prune_word_penalty, ref=ref, device=device, batch_arcs=batch_arcs,
                      normalize=normalize, unk=unk, rules=rules,
                      rescore=RescoreOptions(order=iterations, max_arcs=max_arcs, first_pass_beam=first_pass_beam,
                                             first_pass_max_arcs=first_pass_max_arcs, lookahead=lookahead, progress=False))
    try:
        result = tune(opts, lm_scales, word_penalties, weights, rounds)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    s = result["scales"]
    ranked = sorted(result["grid"], key=lambda g: g[3])
    write_scales(out, s, {**penalties_of(rules), "errors": result["errors"], "ref_words": result["ref_words"], "utterances": result["utterances"],
                          "lm": lm, "old_lm": old_lm, "ref": ref, "rounds": result["rounds"], "grid": result["grid"]})
    for f_source, message in result["failures"]:
        click.echo(failure_line(f_source, message), err=True)
    wer = 100 * result["errors"] / max(result["ref_words"], 1)
    click.echo(f"{out}: lm_scale={s.lm_scale:g} word_penalty={s.word_penalty:g} interpolate={s.interpolate:g} "
               f"(am_scale={s.am_scale:g}): {result['errors']} errors / {result['ref_words']} words ({wer:.2f}% WER) "
               f"on {result['utterances']} utterances; next best: "
               + "; ".join(f"({a:g}, {b:g}, {c:g}) {e}" for a, b, c, e in ranked[1:4]), err=True)
    if result["failures"]:
        sys.exit(1)


def main() -> None:
    tune_command(prog_name="afp-tune")


if __name__ == "__main__":
    sys.exit(main())
