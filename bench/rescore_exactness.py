"""Exactness of K-history expansion + AFP scoring on real lattices, on randomly sampled paths.

For each lattice, sample paths of the expanded lattice uniformly at random (at each state, a
uniformly chosen outgoing arc) and compare the sum of the AFP arc scores along the path with the
model's own sentence log-probability of the path's words (``sentence_log_probs`` in afp mode).

Usage: python bench/rescore_exactness.py --lm model.pt --out exactness.json LATTICES...
"""
import json
import random
import time

import click
import torch

from lattices.reader import read_lattices
from lattices.validate import arc_arrays, validate_batch
from models.files import atomic_open
from models.scoring import sentence_log_probs
from rescore.scorers import lm_ids_for_symbols
from rescore.pipeline import expand_and_score
from rescore.scorers import load_scorer


@click.command(context_settings={"show_default": True})
@click.argument("lattices", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--lm", required=True, type=click.Path(exists=True, dir_okay=False), help="AFP checkpoint.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="JSON summary to write.")
@click.option("--paths", default=20, help="Sampled paths per lattice.")
@click.option("--max-arcs", default=200000, help="Per-lattice expansion bound (as afp-rescore --max-arcs).")
@click.option("--seed", default=0, help="Sampling seed.")
def main(lattices, lm: str, out: str, paths: int, max_arcs: int, seed: int) -> None:
    """Check sum(arc scores) == log P(words) on sampled paths of every expanded lattice."""
    scorer = load_scorer(lm)
    model, vocab = scorer.model, scorer.vocab
    batch, _ = read_lattices(list(lattices))
    batch, _ = validate_batch(batch)
    t0 = time.perf_counter()
    lm_ids = lm_ids_for_symbols(batch.symbols, vocab)
    done = expand_and_score(batch.fsas, batch.symbols, [scorer], scorer.context, max_arcs)
    exp, failures, scores, distinct = done.expansion, done.failures, done.scores[0], done.distinct
    seconds = time.perf_counter() - t0
    A = arc_arrays(exp.fsas)
    rng = random.Random(seed)
    sentences, sums = [], []
    for i in range(exp.fsas.shape[0]):
        final = int(A.state_splits[i + 1]) - 1
        for _ in range(paths):
            state, words, total = int(A.state_splits[i]), [], 0.0
            while state != final:
                arc = rng.randrange(int(A.arc_splits[state]), int(A.arc_splits[state + 1]))
                total += float(scores[arc])
                if A.labels[arc] > 0:
                    words.append(int(lm_ids[A.labels[arc]]))
                state = int(A.dst[arc])
            sentences.append(words)
            sums.append(total)
    ref = sentence_log_probs(model, sentences, vocab.bos_id, vocab.eos_id)
    diff = (torch.tensor(sums, dtype=torch.float64) - ref).abs()
    result = {"lattices": exp.fsas.shape[0], "failed": len(failures), "sampled_paths": len(sums),
              "order": scorer.context, "expanded_arcs": int(exp.fsas.num_arcs), "distinct_histories": distinct,
              "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
              "max_rel_diff": float((diff / ref.abs().clamp(min=1e-9)).max()), "mean_path_logprob": float(ref.mean()),
              "expand_and_score_seconds": seconds}
    with atomic_open(out) as f:
        json.dump(result, f, indent=2)
    click.echo(json.dumps(result))


if __name__ == "__main__":
    main()
