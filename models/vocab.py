"""Word vocabulary compatible with k2/Kaldi ``words.txt`` (one ``word id`` pair per line).

Ids are the ``words.txt`` ids themselves, so lattice labels index the LM directly. The LM's
softmax covers ids ``0..max_id``; ids that can never be a next word (``<eps>``, ``<s>``,
Kaldi disambiguation symbols ``#0``... and holes in the id range) are masked out of it.
"""
import collections
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

EPS = "<eps>"
BOS = "<s>"
EOS = "</s>"
UNK = "<unk>"


class Vocabulary:
    """A bijection between words and integer ids, with ``<s>``, ``</s>`` and an unknown word.

    Args:
        pairs: ``(word, id)`` pairs; ids need not be contiguous but must be unique and >= 0.
        unk: the unknown-word symbol; added (with a new id) when missing. Unknown words map to it.
    """

    def __init__(self, pairs: Iterable[Tuple[str, int]], unk: str = UNK) -> None:
        self.word2id: Dict[str, int] = {}
        self.id2word: Dict[int, str] = {}
        for word, idx in pairs:
            if word in self.word2id:
                raise ValueError(f"vocabulary: word {word!r} appears twice")
            if idx in self.id2word:
                raise ValueError(f"vocabulary: id {idx} used by {self.id2word[idx]!r} and {word!r}")
            if idx < 0:
                raise ValueError(f"vocabulary: negative id {idx} for {word!r}")
            self.word2id[word] = idx
            self.id2word[idx] = word
        for special in (EPS, BOS, EOS, unk):
            if special not in self.word2id:
                self._add(special)
        self.unk = unk
        self.unk_id = self.word2id[unk]
        self.bos_id = self.word2id[BOS]
        self.eos_id = self.word2id[EOS]

    def _add(self, word: str) -> None:
        free_zero = word == EPS and 0 not in self.id2word
        idx = 0 if free_zero else max(self.id2word, default=-1) + 1
        self.word2id[word] = idx
        self.id2word[idx] = word

    @property
    def size(self) -> int:
        """Number of softmax outputs: ``max id + 1``."""
        return max(self.id2word) + 1

    def __len__(self) -> int:
        return len(self.word2id)

    def __contains__(self, word: str) -> bool:
        return word in self.word2id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.pairs() == other.pairs() and self.unk == other.unk

    def pairs(self) -> List[Tuple[str, int]]:
        """All ``(word, id)`` pairs sorted by id."""
        return sorted(self.word2id.items(), key=lambda kv: kv[1])

    def nonpredictable_ids(self) -> List[int]:
        """Ids that must get zero probability as a next word (masked out of the softmax)."""
        holes = [i for i in range(self.size) if i not in self.id2word]
        special = [i for w, i in self.word2id.items() if w in (EPS, BOS) or (w.startswith("#") and w[1:].isdigit())]
        return sorted(holes + special)

    def encode(self, words: Sequence[str]) -> List[int]:
        """Map words to ids; unknown words map to the unknown-word id."""
        get = self.word2id.get
        return [get(w, self.unk_id) for w in words]

    def decode(self, ids: Iterable[int]) -> List[str]:
        """Map ids back to words (``KeyError`` for an id not in the vocabulary)."""
        return [self.id2word[int(i)] for i in ids]

    # --- construction / files ---------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str, unk: str = UNK) -> "Vocabulary":
        """Read a ``words.txt`` file (``word id`` per line, as k2 ``SymbolTable`` writes it)."""
        pairs = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
                    raise ValueError(f"{path}:{lineno}: expected 'word id', got {line.rstrip()!r}")
                pairs.append((fields[0], int(fields[1])))
        if not pairs:
            raise ValueError(f"{path}: empty vocabulary file")
        return cls(pairs, unk=unk)

    @classmethod
    def from_sentences(
        cls, sentences: Iterable[Sequence[str]], max_size: Optional[int] = None, unk: str = UNK
    ) -> "Vocabulary":
        """Build a vocabulary from tokenised text: specials first, then words by frequency.

        Ids: ``<eps>`` 0, ``<s>`` 1, ``</s>`` 2, unk 3, then words by descending count (ties by
        spelling). ``max_size`` caps the total number of entries, specials included.
        """
        counts = collections.Counter(w for s in sentences for w in s)
        specials = [EPS, BOS, EOS, unk]
        for s in specials:
            counts.pop(s, None)
        words = sorted(counts, key=lambda w: (-counts[w], w))
        if max_size is not None:
            if max_size <= len(specials):
                raise ValueError(f"--max-vocab must exceed {len(specials)}, got {max_size}")
            words = words[: max_size - len(specials)]
        return cls(((w, i) for i, w in enumerate(specials + words)), unk=unk)

    def to_file(self, path: str) -> None:
        """Write ``words.txt`` atomically."""
        from .files import atomic_open

        with atomic_open(path) as f:
            for word, idx in self.pairs():
                f.write(f"{word} {idx}\n")

    def to_state(self) -> Dict[str, object]:
        """A plain-data form for checkpoints."""
        return {"pairs": self.pairs(), "unk": self.unk}

    @classmethod
    def from_state(cls, state: Dict[str, object]) -> "Vocabulary":
        return cls([(str(w), int(i)) for w, i in state["pairs"]], unk=str(state["unk"]))  # type: ignore[union-attr]
