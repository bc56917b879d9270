"""``afp-rescore-merge``: merge sharded ``afp-rescore`` outputs."""
import sys

import click

from .merge import merge_runs


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Merged output directory.")
@click.option("--ref", type=click.Path(exists=True, dir_okay=False), help="References: also write OUT/wer.txt.")
def merge_command(shards, out: str, ref) -> None:
    """Merge the finished shard directories SHARDS (afp-rescore --out of each --shard) into OUT."""
    try:
        m = merge_runs(list(shards), out, ref)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    wer = f", WER {100 * m['wer']:.2f}%" if m.get("wer") is not None else ""
    click.echo(f"{out}: {m['utterances_done']} utterances from {m['shards']} shards, {m['utterances_failed']} failed{wer}", err=True)


def main() -> None:
    merge_command(prog_name="afp-rescore-merge")


if __name__ == "__main__":
    sys.exit(main())
