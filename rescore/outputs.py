"""Writers for rescoring results; every file is written atomically.

Each writer takes a path (the file is written atomically) or an already open text handle (a file
a streaming job appends to, batch after batch; see :mod:`rescore.run`).
"""
import contextlib
import json
from typing import IO, Dict, Iterator, List, Sequence, Tuple, Union

import k2

from models.files import atomic_open

Target = Union[str, IO[str]]


@contextlib.contextmanager
def _opened(target: Target) -> Iterator[IO[str]]:
    if isinstance(target, str):
        with atomic_open(target) as f:
            yield f
    else:
        yield target


def words_of(ids: Sequence[int], symbols: k2.SymbolTable) -> List[str]:
    """Word strings of lattice symbol ids."""
    return [symbols.get(int(i)) for i in ids]


def write_text(path: Target, utt_ids: Sequence[str], words: Sequence[Sequence[str]]) -> None:
    """Kaldi ``text``: ``utt-id word word ...`` per line."""
    with _opened(path) as f:
        for utt, ws in zip(utt_ids, words):
            f.write(" ".join([utt, *ws]) + "\n")


def write_jsonl(path: Target, records: Sequence[Dict]) -> None:
    with _opened(path) as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")


def write_json(path: str, obj: Dict) -> None:
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def write_failures(path: Target, failures: Sequence[Tuple[str, str]]) -> None:
    """``source<TAB>message`` per failed file or utterance (an empty file when none failed)."""
    with _opened(path) as f:
        for source, message in failures:
            f.write(f"{source}\t{message}\n")


def failure_line(source: str, message: str) -> str:
    """A failure as the commands print it: ``failed: source: message``, the source once (most
    messages of a file already start with its path)."""
    return f"failed: {message}" if message.startswith(source) else f"failed: {source}: {message}"


def write_supervisions(path: Target, utt_ids: Sequence[str], words: Sequence[Sequence[str]], durations: Sequence[float]) -> None:
    """The 1-best hypotheses as a lhotse SupervisionSet (``recording_id`` = utterance id)."""
    from lhotse import SupervisionSegment

    with _opened(path) as f:
        for u, w, d in zip(utt_ids, words, durations):
            sup = SupervisionSegment(id=u, recording_id=u, start=0.0, duration=float(d), text=" ".join(w))
            f.write(json.dumps(sup.to_dict()) + "\n")
