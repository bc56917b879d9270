"""Training text: plain/gzip text (one sentence per line) or lhotse manifests; id batches."""
import os
import random
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .files import open_text

MANIFEST_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


def _manifest_texts(path: str) -> Iterator[str]:
    """Supervision texts of a lhotse SupervisionSet or CutSet manifest."""
    try:
        from lhotse import CutSet, SupervisionSet, load_manifest  # lazy: optional for plain text
    except ImportError:
        raise ValueError(f"{path}: reading a lhotse manifest needs lhotse (pip install lhotse)") from None

    try:
        manifest = load_manifest(path)
    except Exception as e:
        raise ValueError(f"{path}: cannot read lhotse manifest ({type(e).__name__}: {e})") from None
    if isinstance(manifest, SupervisionSet):
        supervisions = iter(manifest)
    elif isinstance(manifest, CutSet):
        supervisions = (s for cut in manifest for s in cut.supervisions)
    else:
        raise ValueError(f"{path}: expected a SupervisionSet or CutSet manifest, got {type(manifest).__name__}")
    for sup in supervisions:
        if sup.text:
            yield sup.text


def _text_lines(path: str) -> Iterator[str]:
    with open_text(path) as f:  # read errors become a ValueError naming the file
        yield from f


def read_sentences(path: str, max_len: Optional[int] = None) -> List[List[str]]:
    """Tokenised sentences of one training file (whitespace tokens, empty lines skipped).

    Args:
        path: plain text or ``.gz`` (one sentence per line), or a lhotse SupervisionSet/CutSet
            manifest (``.jsonl[.gz]``/``.json[.gz]``; the supervision texts are used).
        max_len: split sentences longer than this into consecutive pieces of at most
            ``max_len`` words (each piece is modelled as its own sentence).

    Raises:
        ValueError: naming ``path`` if it is missing, unreadable or holds no sentence.
    """
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    lines = _manifest_texts(path) if path.endswith(MANIFEST_SUFFIXES) else _text_lines(path)
    sentences: List[List[str]] = []
    for line in lines:
        words = line.split()
        if not words:
            continue
        step = max_len or len(words)
        sentences.extend(words[i : i + step] for i in range(0, len(words), step))
    if not sentences:
        raise ValueError(f"{path}: no sentences (empty file?)")
    return sentences


def read_corpus(paths: Sequence[str], max_len: Optional[int] = None) -> List[List[str]]:
    """Concatenate :func:`read_sentences` over several files."""
    return [s for p in paths for s in read_sentences(p, max_len)]


class Batch:
    """A padded LM batch: ``inputs = <s> w_1..w_n``, ``targets = w_1..w_n </s>``.

    Attributes:
        inputs, targets: ``[B, T]`` int64; mask: ``[B, T]`` bool, True on real tokens.
    """

    def __init__(self, sentences: Sequence[Sequence[int]], bos: int, eos: int) -> None:
        longest = max(len(s) for s in sentences) + 1
        self.inputs = torch.full((len(sentences), longest), eos, dtype=torch.long)
        self.targets = torch.full_like(self.inputs, eos)
        self.mask = torch.zeros_like(self.inputs, dtype=torch.bool)
        for i, s in enumerate(sentences):
            row = torch.as_tensor(list(s), dtype=torch.long)
            self.inputs[i, 0] = bos
            self.inputs[i, 1 : len(s) + 1] = row
            self.targets[i, : len(s)] = row
            self.mask[i, : len(s) + 1] = True

    @property
    def num_tokens(self) -> int:
        return int(self.mask.sum())

    def to(self, device: torch.device) -> Tuple[Tensor, Tensor, Tensor]:
        return self.inputs.to(device), self.targets.to(device), self.mask.to(device)


def make_batches(
    sentences: Sequence[Sequence[int]], batch_size: int, bos: int, eos: int, shuffle: bool = False, seed: int = 0
) -> List[Batch]:
    """Group sentences of similar length into batches of ``batch_size`` (less padding).

    With ``shuffle`` the sentences are shuffled before the length sort (so ties vary) and the
    batch order is shuffled; the result is deterministic given ``seed``.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    order = list(range(len(sentences)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
    order.sort(key=lambda i: len(sentences[i]))
    batches = [Batch([sentences[i] for i in order[s : s + batch_size]], bos, eos) for s in range(0, len(order), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches
