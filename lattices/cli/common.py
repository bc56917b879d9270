"""Shared pieces of the ``afp-lattice`` commands: input options, loading, failures, scales."""
import functools
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import click

from lattices.lattice_batch import LatticeBatch
from lattices.lattice_batch import resolve_scales as resolve_batch_scales
from lattices.validate import validate_batch

FORMATS = ("auto", "k2", "slf", "kaldi")


@dataclass
class Problem:
    """A file or utterance that could not be processed: ``source`` is ``path`` or ``path:utt``."""

    source: str
    message: str


def lattice_inputs(func: Callable) -> Callable:
    """Decorator adding ``LATTICES...`` (files, directories or list files), ``--format`` and ``--words``.

    The wrapped command receives ``lattices`` (tuple of paths), ``fmt`` and ``words``.
    """
    func = click.argument("lattices", nargs=-1, required=True, type=click.Path(exists=True))(func)
    func = click.option(
        "--words",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Word symbol table (words.txt); needed for Kaldi lattices with integer word ids.",
    )(func)
    func = click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="auto",
        show_default=True,
        help="Lattice format of the inputs (auto: detect from content/suffix).",
    )(func)
    return func


def scale_options(func: Callable) -> Callable:
    """Decorator adding ``--am-scale``, ``--lm-scale``, ``--word-penalty`` (None = from header, else 1/1/0)."""
    for name, what, default in reversed(
        [("--am-scale", "acoustic scale (SLF acscale)", "1"),
         ("--lm-scale", "LM scale (SLF lmscale)", "1"),
         ("--word-penalty", "word insertion penalty (SLF wdpenalty)", "0")]
    ):
        func = click.option(
            name,
            type=float,
            default=None,
            show_default=f"from the lattice header, else {default}",
            help=f"The {what} in total = am_scale*am + lm_scale*lm + word_penalty*words.",
        )(func)
    return func


def load(paths: Sequence[str], fmt: str, words: Optional[str], raw: bool = False) -> Tuple[LatticeBatch, List[Problem]]:
    """Read and validate lattices; returns the good utterances and every problem by name.

    Args:
        paths: lattice files.
        fmt: one of ``FORMATS``.
        words: optional words.txt.
        raw: keep word symbols exactly (no normalisation), e.g. for format conversion.
    """
    try:
        from lattices.normalize import NormalizationRules
        from lattices.reader import read_lattices
    except ImportError as e:  # pragma: no cover - only while the reader is missing
        raise click.ClickException(f"lattice reader not available: {e}")
    rules = NormalizationRules.raw_words() if raw else NormalizationRules()
    batch, failures = read_lattices(list(paths), fmt=fmt, words=words, rules=rules)
    problems = [Problem(f.source, f.message) for f in failures]
    sources = {u: source_of(batch, i) for i, u in reversed(list(enumerate(batch.utt_ids)))}
    batch, bad = validate_batch(batch)
    problems += [Problem(sources.get(u, u), m) for u, m in bad]
    return batch, problems


def source_of(batch: LatticeBatch, i: int) -> str:
    """``path:utt`` for utterance ``i`` (just ``utt`` when the header has no path)."""
    path = batch.headers[i].get("path") if batch.headers else None
    return f"{path}:{batch.utt_ids[i]}" if path else batch.utt_ids[i]


def finish(problems: Sequence[Problem]) -> None:
    """Print every problem as ``source: message`` on stderr; exit 1 if there were any."""
    for p in problems:
        message = p.message
        if message.startswith(p.source + ": "):  # readers often name the path already
            message = message[len(p.source) + 2 :]
        click.echo(f"{p.source}: {message}", err=True)
    if problems:
        click.echo(f"afp-lattice: {len(problems)} file(s)/utterance(s) failed", err=True)
        sys.exit(1)


def resolve_scales(
    batch: LatticeBatch, am_scale: Optional[float], lm_scale: Optional[float], word_penalty: Optional[float]
) -> List[Tuple[float, float, float]]:
    """Per utterance ``(am_scale, lm_scale, word_penalty)`` (:func:`lattices.lattice_batch.resolve_scales`);
    prints each distinct setting and where it came from on stderr."""
    headers = batch.headers or [{} for _ in batch.utt_ids]
    scales, origins = resolve_batch_scales(headers, am_scale, lm_scale, word_penalty)
    seen: Dict[Tuple[Tuple[float, float, float], str], int] = {}
    for triple, desc in zip(scales, origins):
        seen[(triple, desc)] = seen.get((triple, desc), 0) + 1
    for (triple, desc), count in seen.items():
        click.echo(
            f"scales: am_scale={triple[0]:g} lm_scale={triple[1]:g} word_penalty={triple[2]:g} "
            f"({desc}) for {count} utterance(s)",
            err=True,
        )
    return scales


def wrap_errors(func: Callable) -> Callable:
    """Turn a ``ValueError``/``RuntimeError`` escaping a command into a clean Click error (exit 1)."""

    @functools.wraps(func)
    def inner(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ValueError, RuntimeError, OSError) as e:
            raise click.ClickException(str(e))

    return inner
