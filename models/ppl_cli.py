"""``afp-lm-ppl``: perplexity of a trained LM on text files."""
import json
import sys

import click

from .perplexity import text_perplexity

INPUT = click.Path(exists=True, dir_okay=False)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--lm", required=True, type=INPUT, help="Checkpoint written by afp-train-lm (model.pt).")
@click.option("--text", "texts", multiple=True, required=True, type=INPUT,
              help="Text to score: one sentence per line (plain or .gz) or a lhotse manifest. Repeatable.")
@click.option("--mode", type=click.Choice(["afp", "exact"]), default=None,
              help="Override the model's recurrence (default: the mode it was trained in).")
@click.option("--iterations", "-K", type=click.IntRange(min=1), default=None, help="Override K for --mode afp.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, help="Sentences per batch.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", help="auto = CUDA when available.")
def ppl_command(lm: str, texts, mode, iterations, batch_size: int, device: str) -> None:
    """Print one JSON line per text file: perplexity over words and </s>, token and OOV counts."""
    for path in texts:
        try:
            result = text_perplexity(lm, path, mode, iterations, batch_size, device)
        except ValueError as e:
            raise click.ClickException(str(e)) from None
        click.echo(json.dumps(result))


def main() -> None:
    ppl_command(prog_name="afp-lm-ppl")


if __name__ == "__main__":
    sys.exit(main())
