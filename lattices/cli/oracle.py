"""``afp-lattice oracle``: oracle (lattice) WER against references."""
import json
from typing import Optional

import click

from lattices.cli.common import LatticeInputs, Problem, finish, lattice_inputs, load, source_of, wrap_errors
from lattices.oracle import oracle_wer
from models.files import atomic_open, read_references


@click.command()
@click.option("--ref", "ref_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="References: Kaldi text (utt-id words) or lhotse supervisions (.jsonl[.gz]).")
@lattice_inputs
@click.option("--keep-case", is_flag=True, help="Compare words case-sensitively (default: ignore case).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help='Per-utterance JSON lines {"utt","errors","ref_words","oracle"}.')
@wrap_errors
def oracle(ref_path: str, inputs: LatticeInputs, keep_case: bool, out: Optional[str]) -> None:
    """Oracle WER: per lattice, the path with the fewest edits to the reference (scores ignored).

    References get the same word normalisation as lattices (fillers and sentence markers dropped).
    """
    from lattices.normalize import NormalizationRules, normalize_words

    batch, problems = load(inputs)
    refs = read_references(ref_path)
    rules = NormalizationRules()
    keep, ref_words = [], []
    for i, utt in enumerate(batch.utt_ids):
        if utt not in refs:
            problems.append(Problem(source_of(batch, i), f"no reference in {ref_path}"))
            continue
        keep.append(i)
        ref_words.append(normalize_words(refs[utt], rules))
    if len(keep) != len(batch):
        from lattices.validate import select_lattices

        fsas = select_lattices(batch.fsas, keep)
    else:
        fsas = batch.fsas
    per_utt, summary = oracle_wer(fsas, batch.symbols, ref_words, lowercase=not keep_case)
    if out:
        with atomic_open(out, "w") as f:
            for i, (res, ws) in zip(keep, per_utt):
                f.write(json.dumps({"utt": batch.utt_ids[i], "errors": res.errors, "ref_words": res.ref_len,
                                    "oracle": " ".join(ws)}) + "\n")
    click.echo(
        f"oracle WER {100 * summary.wer:.2f}% ({summary.errors} errors / {summary.ref_words} words, "
        f"{len(keep)} utterances)"
    )
    finish(problems)
