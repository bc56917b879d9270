"""Normalisation of word symbols so that lattice word sequences compare to references.

The rules are one small frozen dataclass, :class:`NormalizationRules`; readers apply them to
every word *string* before it becomes a word id. A rule maps a word either to a (possibly
rewritten) word or to epsilon (``None`` here, label ``0`` in the FsaVec).

Defaults (``NormalizationRules()``), applied in this order:

1. ``<eps>`` and ``!NULL`` are always epsilon (they *mean* "no word" in Kaldi/HTK), even in raw mode.
2. Unless ``raw``: every word in ``epsilon_words`` is epsilon: sentence markers ``<s>``, ``</s>``,
   ``!SENT_START``, ``!SENT_END``, ``!ENTER``, ``!EXIT``, silences ``<sil>``, ``!SIL``, ``SIL``,
   ``<SIL>``, ``sil``, ...
3. Unless ``raw``: fillers matching one of ``filler_patterns`` are epsilon: ``[NOISE]``,
   ``[laughter]``, ``<sil>``-style ``<...>`` tokens (except those in ``keep_words``, e.g. ``<unk>``),
   ``++GARBAGE++`` (pocketsphinx/CMU fillers).
4. Unless ``raw``: ``strip_variants`` turns pronunciation variants ``the(2)`` into ``the``.
5. Unless ``raw``: ``case`` maps to ``"upper"`` or ``"lower"`` case (``None`` keeps it).
   LibriSpeech references are upper case, pocketsphinx words lower case: use
   :meth:`NormalizationRules.for_references` (``case="upper"``) to compare them.

``raw=True`` (:meth:`NormalizationRules.raw_words`) keeps every word except rule 1 exactly as
written; round trips use it.

Penalties for the words that become epsilon (:func:`epsilon_penalty`): a recognizer's search
scores silence and filler words with penalties the lattice may lack (pocketsphinx's ``-silprob``
and ``-fillprob``, Kaldi's silence probability in the lexicon). ``silence_penalty`` applies to
silences (``<sil>``, ``SIL``, ``sp``, ...), ``filler_penalty`` to fillers (``[NOISE]``,
``++GARBAGE++``, ``<noise>``, ...) and ``null_penalty`` to ``!NULL`` (pocketsphinx writes every
filler, silence included, as ``!NULL``). The readers add them to the arc's acoustic score, as
pocketsphinx adds its penalties to the acoustic score of filler links
(``ps_lattice_penalize_fillers``).

Out-of-vocabulary words (a word not in a *given* ``words.txt``) map to ``oov`` (default
``<unk>``) when the table has that symbol; otherwise (or with ``oov=None``) the utterance fails
with a ``ValueError`` naming the file, utterance and word. This is handled in
:mod:`lattices.fsa_build`; the rules only carry the setting.
"""
import re
from dataclasses import dataclass
from typing import FrozenSet, Iterable, List, Optional, Tuple

ALWAYS_EPSILON: FrozenSet[str] = frozenset({"<eps>", "!NULL"})

DEFAULT_EPSILON_WORDS: FrozenSet[str] = frozenset(
    {
        "<s>", "</s>", "!SENT_START", "!SENT_END", "!ENTER", "!EXIT",
        "<sil>", "<SIL>", "!SIL", "SIL", "sil", "<silence>", "SILENCE", "<sp>", "sp",
        "#0", "<noise>", "<NOISE>", "<spoken_noise>", "<SPOKEN_NOISE>",
    }
)
DEFAULT_FILLER_PATTERNS: Tuple[str, ...] = (r"\[[^\]]*\]", r"<[^>]*>", r"\+\+.*\+\+")
DEFAULT_KEEP_WORDS: FrozenSet[str] = frozenset({"<unk>", "<UNK>"})
SILENCE_WORDS: FrozenSet[str] = frozenset(
    {"<sil>", "<SIL>", "!SIL", "SIL", "sil", "<silence>", "SILENCE", "<sp>", "sp"})
SENTENCE_MARKERS: FrozenSet[str] = frozenset(
    {"<s>", "</s>", "!SENT_START", "!SENT_END", "!ENTER", "!EXIT", "#0", "<eps>", ""})
_VARIANT = re.compile(r"^(.+)\(\d+\)$")


@dataclass(frozen=True)
class NormalizationRules:
    """How word strings from lattices (and references) are normalised; see the module docstring.

    Attributes:
        raw: keep every word but ``<eps>``/``!NULL`` exactly (for round trips).
        epsilon_words: exact words mapped to epsilon.
        filler_patterns: regular expressions (full match) of filler words mapped to epsilon.
        keep_words: words never treated as fillers (checked before ``filler_patterns``).
        strip_variants: ``word(2)`` → ``word``.
        case: ``None``, ``"upper"`` or ``"lower"``.
        oov: symbol used for words missing from a given ``words.txt`` (if the table has it);
            ``None`` makes such words an error.
        silence_penalty, filler_penalty, null_penalty: log-score added to the acoustic score of
            arcs whose word is a silence, a filler or ``!NULL`` (see the module docstring).
    """

    raw: bool = False
    epsilon_words: FrozenSet[str] = DEFAULT_EPSILON_WORDS
    filler_patterns: Tuple[str, ...] = DEFAULT_FILLER_PATTERNS
    keep_words: FrozenSet[str] = DEFAULT_KEEP_WORDS
    strip_variants: bool = True
    case: Optional[str] = None
    oov: Optional[str] = "<unk>"
    silence_penalty: float = 0.0
    filler_penalty: float = 0.0
    null_penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.case not in (None, "upper", "lower"):
            raise ValueError(f"NormalizationRules.case must be None, 'upper' or 'lower', got {self.case!r}")
        # frozen dataclass: compile once and stash the regex without breaking immutability
        object.__setattr__(
            self, "_fillers", re.compile("|".join(f"(?:{p})" for p in self.filler_patterns)) if self.filler_patterns else None
        )

    @classmethod
    def raw_words(cls) -> "NormalizationRules":
        """Rules that keep words exactly (only ``<eps>``/``!NULL`` become epsilon)."""
        return cls(raw=True)

    @classmethod
    def for_references(cls) -> "NormalizationRules":
        """Default rules plus upper-casing, to compare with LibriSpeech-style references."""
        return cls(case="upper")


def normalize_word(word: str, rules: NormalizationRules) -> Optional[str]:
    """Normalise one word.

    Args:
        word: a word as written in a lattice or reference.
        rules: the rules to apply.

    Returns:
        The normalised word, or ``None`` for epsilon (no word).
    """
    if word in ALWAYS_EPSILON or word == "":
        return None
    if rules.raw:
        return word
    if word in rules.epsilon_words:
        return None
    fillers = getattr(rules, "_fillers")
    if word not in rules.keep_words and fillers is not None and fillers.fullmatch(word):
        return None
    if rules.strip_variants:
        m = _VARIANT.match(word)
        if m:
            word = m.group(1)
            if word in rules.epsilon_words:
                return None
    if rules.case == "upper" and word not in rules.keep_words:
        word = word.upper()
    elif rules.case == "lower" and word not in rules.keep_words:
        word = word.lower()
    return word


def epsilon_penalty(word: Optional[str], rules: NormalizationRules) -> float:
    """The penalty added to the acoustic score of an arc carrying ``word``: ``null_penalty`` for
    ``!NULL``, ``silence_penalty`` for a silence, ``filler_penalty`` for any other word the rules
    make epsilon except sentence markers and ``<eps>``; 0 for a word the rules keep.

    Args:
        word: the word as written in the lattice (None: no word).
        rules: the rules (and penalties) to apply.
    """
    if word is None or word in SENTENCE_MARKERS or normalize_word(word, rules) is not None:
        return 0.0
    if word == "!NULL":
        return rules.null_penalty
    m = _VARIANT.match(word) if rules.strip_variants else None
    if (m.group(1) if m else word) in SILENCE_WORDS:
        return rules.silence_penalty
    return rules.filler_penalty


def normalize_words(words: Iterable[str], rules: NormalizationRules) -> List[str]:
    """Normalise a word sequence (e.g. a reference or 1-best), dropping epsilons.

    Args:
        words: words in order.
        rules: the rules to apply.

    Returns:
        The normalised words without epsilons.
    """
    out = []
    for w in words:
        n = normalize_word(w, rules)
        if n is not None:
            out.append(n)
    return out
