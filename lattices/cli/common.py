"""Shared pieces of the ``afp-lattice`` commands: input options, loading, failures, scales."""
import functools
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import click

from lattices.lattice_batch import LatticeBatch
from lattices.reader import DEFAULT_BATCH_ARCS
from lattices.lattice_batch import resolve_scales as resolve_batch_scales
from lattices.lattice_batch import warn_if_default_lm_scale
from lattices.validate import validate_batch

FORMATS = ("auto", "k2", "slf", "kaldi")
BATCH_ARCS = DEFAULT_BATCH_ARCS  # input arcs a batch of the streaming commands (afp-rescore's default)


@dataclass
class Problem:
    """A file or utterance that could not be processed: ``source`` is ``path`` or ``path:utt``."""

    source: str
    message: str


def plain_warnings() -> None:
    """Print library warnings (e.g. a Kaldi archive read without words.txt) as ``warning: ...``."""
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"


class LatticePath(click.ParamType):
    """A lattice input: an existing file or directory, an ``@list`` file, or a Kaldi rspecifier
    (``ark:FILE``, ``ark,t:FILE``, ``scp:FILE``, ``'ark:CMD |'``) whose file exists."""

    name = "lattices"

    def convert(self, value, param, ctx):
        from lattices.kaldi_archive import is_rspecifier, rspecifier_missing

        if is_rspecifier(value):
            missing = rspecifier_missing(value)
            if missing is not None:
                self.fail(f"{value!r}: file {missing!r} does not exist", param, ctx)
            return value
        if not os.path.exists(value[1:] if value.startswith("@") else value):
            self.fail(f"path {value!r} does not exist", param, ctx)
        return value


LATTICE_PATH = LatticePath()


@dataclass
class LatticeInputs:
    """What ``LATTICES...``, ``--format``, ``--words``, ``--frame-shift`` and
    ``--frame-subsampling-factor`` ask to read."""

    paths: Tuple[str, ...]
    fmt: str
    words: Optional[str]
    frame_seconds: float


def frame_options(func: Callable) -> Callable:
    """Decorator adding ``--frame-shift`` and ``--frame-subsampling-factor`` (Kaldi word times)."""
    func = click.option("--frame-subsampling-factor", type=click.IntRange(min=1), default=1, show_default=True,
                        help="Frames per Kaldi transition id (3 for chain models).")(func)
    return click.option("--frame-shift", type=click.FloatRange(min=0, min_open=True), default=0.01, show_default=True,
                        help="Seconds per frame, for word times from Kaldi transition ids.")(func)


def penalty_options(func: Callable) -> Callable:
    """Decorator adding ``--silence-penalty``, ``--filler-penalty`` and ``--null-penalty``; the
    command receives them as ``rules`` (:class:`lattices.normalize.NormalizationRules`)."""
    from lattices.normalize import NormalizationRules

    @functools.wraps(func)
    def inner(*args, silence_penalty, filler_penalty, null_penalty, **kwargs):
        rules = NormalizationRules(silence_penalty=silence_penalty, filler_penalty=filler_penalty, null_penalty=null_penalty)
        return func(*args, rules=rules, **kwargs)

    for name, what in (("null", "!NULL (pocketsphinx writes every filler, silence too, as !NULL)"),
                       ("filler", "fillers ([NOISE], ++GARBAGE++, <noise>, ...)"), ("silence", "silences (<sil>, SIL, sp, ...)")):
        inner = click.option(f"--{name}-penalty", type=float, default=0.0, show_default=True,
                             help=f"Log-score added to the acoustic score of arcs of {what}, which become epsilon.")(inner)
    return inner


def lattice_inputs(func: Callable) -> Callable:
    """Decorator adding ``LATTICES...`` (files, directories, list files or Kaldi rspecifiers),
    ``--format``, ``--words`` and the frame options; the command receives them as one
    ``inputs`` (:class:`LatticeInputs`)."""

    @functools.wraps(func)
    def inner(*args, lattices, fmt, words, frame_shift, frame_subsampling_factor, **kwargs):
        inputs = LatticeInputs(tuple(lattices), fmt, words, frame_shift * frame_subsampling_factor)
        return func(*args, inputs=inputs, **kwargs)

    inner = click.argument("lattices", nargs=-1, required=True, type=LATTICE_PATH)(inner)
    inner = click.option(
        "--words",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Word symbol table (words.txt) of Kaldi lattices [default: one next to the archive, else the ids are the words].",
    )(inner)
    inner = frame_options(inner)
    inner = click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="auto",
        show_default=True,
        help="Lattice format of the inputs (auto: detect from the content).",
    )(inner)
    return inner


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


def load_batches(inputs: LatticeInputs, raw: bool = False,
                 keep: Optional[Callable[[str], bool]] = None) -> Iterator[Tuple[LatticeBatch, List[Problem]]]:
    """Read and validate lattices one batch at a time (:func:`lattices.reader.iter_lattice_batches`,
    about :data:`BATCH_ARCS` input arcs a batch), so memory holds one batch, not the whole input.

    Args:
        inputs: what to read.
        raw: keep word symbols exactly (no normalisation), e.g. for format conversion.
        keep: ``keep(utterance id)``: read only those utterances (the others are not parsed).

    Yields:
        ``(batch of the valid lattices, problems)``: every file and utterance that failed, by name,
        with the batch it was found in. Word ids are the same in every batch (a later batch's
        table extends an earlier one's).
    """
    from lattices.reader import expand_paths, iter_lattice_batches

    files, fails = expand_paths(list(inputs.paths))
    problems = [Problem(f.source, f.message) for f in fails]
    for batch, failures in iter_lattice_batches(files, fmt=inputs.fmt, words=inputs.words, rules=_rules(raw),
                                                batch_arcs=BATCH_ARCS, keep=keep, frame_seconds=inputs.frame_seconds):
        yield _validated(batch, problems + [Problem(f.source, f.message) for f in failures])
        problems = []


def _rules(raw: bool):
    from lattices.normalize import NormalizationRules

    return NormalizationRules.raw_words() if raw else NormalizationRules()


def _validated(batch: LatticeBatch, problems: List[Problem]) -> Tuple[LatticeBatch, List[Problem]]:
    """The batch's valid lattices, and ``problems`` plus one per invalid lattice (named ``path:utt``)."""
    sources = {u: source_of(batch, i) for i, u in reversed(list(enumerate(batch.utt_ids)))}
    batch, bad = validate_batch(batch)
    return batch, problems + [Problem(sources.get(u, u), m) for u, m in bad]


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
    batch: LatticeBatch, am_scale: Optional[float], lm_scale: Optional[float], word_penalty: Optional[float],
    seen: Optional[Dict[Tuple[Tuple[float, float, float], str], int]] = None,
) -> List[Tuple[float, float, float]]:
    """Per utterance ``(am_scale, lm_scale, word_penalty)`` (:func:`lattices.lattice_batch.resolve_scales`).

    Each distinct setting and where it came from is counted in ``seen`` (shown by
    :func:`report_scales` once the input is read), or, without ``seen``, shown now on stderr.
    """
    headers = batch.headers or [{} for _ in batch.utt_ids]
    scales, origins = resolve_batch_scales(headers, am_scale, lm_scale, word_penalty)
    warn_if_default_lm_scale(origins)
    counts: Dict[Tuple[Tuple[float, float, float], str], int] = {} if seen is None else seen
    for triple, desc in zip(scales, origins):
        counts[(triple, desc)] = counts.get((triple, desc), 0) + 1
    if seen is None:
        report_scales(counts)
    return scales


def report_scales(seen: Dict[Tuple[Tuple[float, float, float], str], int]) -> None:
    """Print each distinct scale setting, where it came from and for how many utterances."""
    for (triple, desc), count in seen.items():
        click.echo(f"scales: am_scale={triple[0]:g} lm_scale={triple[1]:g} word_penalty={triple[2]:g} "
                   f"({desc}) for {count} utterance(s)", err=True)


def wrap_errors(func: Callable) -> Callable:
    """Turn a ``ValueError``/``RuntimeError`` escaping a command into a clean Click error (exit 1)."""

    @functools.wraps(func)
    def inner(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ValueError, RuntimeError, OSError) as e:
            raise click.ClickException(str(e))

    return inner
