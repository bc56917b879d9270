"""``afp-train-lm``: fit an AFP (or BPTT) RNN language model on text."""
import json
import sys

import click

from .config import CELLS
from .training import TrainOptions, train_lm

INPUT = click.Path(exists=True, dir_okay=False)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--train", "train", multiple=True, required=True, type=INPUT,
              help="Training text: one sentence per line (plain or .gz), or a lhotse SupervisionSet/CutSet manifest. Repeatable.")
@click.option("--valid", required=True, type=INPUT, help="Validation text (same formats); selects the best model and drives LR decay.")
@click.option("--test", type=INPUT, help="Optional test text, evaluated with the best model at the end.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory (model.pt, last.pt, train.log, metrics.json).")
@click.option("--cell", type=click.Choice(CELLS), default="lstm", help="Recurrent cell.")
@click.option("--layers", type=click.IntRange(min=1), default=1, help="Number of recurrent layers.")
@click.option("--hidden", type=click.IntRange(min=1), default=256, help="Recurrent state size.")
@click.option("--embed", type=click.IntRange(min=1), default=256, help="Word embedding size.")
@click.option("--iterations", "-K", type=click.IntRange(min=1), default=4,
              help="K: Jacobi iterations of the AFP recurrence = the model's context in words.")
@click.option("--mode", type=click.Choice(["afp", "bptt"]), default="afp",
              help="afp: train the K-iteration fixed-point model; bptt: the exact RNN (cuDNN) as a reference.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, help="Maximum number of epochs.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many optimizer steps in total.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=None,
              help="Also validate and checkpoint every N steps inside an epoch (model.pt if better, last.pt), so --resume continues mid-epoch; for corpora whose epoch outlasts a job.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, help="Sentences per batch (per process under torchrun).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, help="Adam learning rate.")
@click.option("--lr-decay", type=click.FloatRange(0, 1), default=0.5, help="LR factor after an epoch without validation gain.")
@click.option("--patience", type=click.IntRange(min=1), default=2, help="Stop after this many epochs without validation gain.")
@click.option("--clip", type=click.FloatRange(min=0), default=1.0, help="Gradient-norm clipping (0: off).")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, help="Dropout on embeddings, between layers and before the output.")
@click.option("--tie/--no-tie", default=False, help="Tie input and output embeddings (needs --embed == --hidden).")
@click.option("--vocab", type=INPUT, help="words.txt (k2/Kaldi 'word id' lines) to use instead of building one from --train.")
@click.option("--max-vocab", type=click.IntRange(min=5), default=None, help="Keep the N-4 most frequent training words (+ <eps> <s> </s> <unk>).")
@click.option("--max-len", type=click.IntRange(min=1), default=100, help="Split longer training lines into pieces of at most this many words.")
@click.option("--max-recurrent-norm", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Keep each recurrent weight's spectral norm <= this (contractive map, Miller & Hardt).")
@click.option("--self-norm", type=click.FloatRange(min=0), default=0.0,
              help="alpha: add alpha*mean((log Z)^2) to the loss (self-normalisation), so afp-rescore --no-normalize can skip the softmax normaliser.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", help="auto = CUDA when available.")
@click.option("--seed", type=int, default=1, help="Random seed (initialisation and batch order).")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt (options and vocabulary must match).")
@click.option("--dry-run", is_flag=True, help="Read data, build the model, run one step, print a summary; write nothing.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def train_command(**kwargs) -> None:
    """Train an approximate fixed-point (AFP) RNN language model.

    With --mode afp the recurrence is computed by K Jacobi iterations batched over all time
    steps, so the model is a finite-context (K-word) LM that scores lattice arcs exactly after
    K-history expansion. --mode bptt trains the ordinary RNN for comparison.
    """
    kwargs["train"] = list(kwargs["train"])
    try:
        result = train_lm(TrainOptions(**kwargs))
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    if kwargs["dry_run"]:
        click.echo(json.dumps(result, indent=2))


def main() -> None:
    train_command(prog_name="afp-train-lm")


if __name__ == "__main__":
    sys.exit(main())
