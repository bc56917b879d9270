"""``afp-lattice oracle``: oracle (lattice) WER against references."""
import json
from contextlib import ExitStack
from typing import List, Optional

import click

from lattices.cli.common import LatticeInputs, Problem, finish, lattice_inputs, load_batches, source_of, wrap_errors
from lattices.normalize import NormalizationRules, normalize_words
from lattices.oracle import OracleSummary, oracle_wer
from lattices.validate import select_lattices
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
    refs = read_references(ref_path)
    rules = NormalizationRules()
    problems: List[Problem] = []
    errors = ref_words = utterances = 0
    with ExitStack() as stack:
        f = stack.enter_context(atomic_open(out, "w")) if out else None
        for batch, batch_problems in load_batches(inputs):  # one batch at a time: memory does not grow
            problems += batch_problems
            keep = [i for i, utt in enumerate(batch.utt_ids) if utt in refs]
            problems += [Problem(source_of(batch, i), f"no reference in {ref_path}")
                         for i, utt in enumerate(batch.utt_ids) if utt not in refs]
            if not keep:
                continue
            fsas = batch.fsas if len(keep) == len(batch) else select_lattices(batch.fsas, keep)
            per_utt, summary = oracle_wer(fsas, batch.symbols, [normalize_words(refs[batch.utt_ids[i]], rules) for i in keep],
                                          lowercase=not keep_case)
            errors, ref_words, utterances = errors + summary.errors, ref_words + summary.ref_words, utterances + len(keep)
            if f is not None:
                f.write("".join(json.dumps({"utt": batch.utt_ids[i], "errors": res.errors, "ref_words": res.ref_len,
                                            "oracle": " ".join(ws)}) + "\n" for i, (res, ws) in zip(keep, per_utt)))
    total = OracleSummary(errors, ref_words)
    click.echo(f"oracle WER {100 * total.wer:.2f}% ({total.errors} errors / {total.ref_words} words, {utterances} utterances)")
    finish(problems)
