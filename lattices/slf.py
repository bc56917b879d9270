"""HTK Standard Lattice Format (SLF): parse into an :class:`~lattices.fsa_build.ArcList`, format out.

Reading (HTK book ch. "HTK Standard Lattice Format"):

- Fields are ``name=value`` separated by white space, values may be ``"quoted"``; ``#`` lines are
  comments. Words are read with HTK's escapes (:func:`htk_unescape`: ``\\ooo`` octal bytes,
  ``\\c`` = ``c``) and written with them where needed (:func:`htk_escape`). Long (``NODES=``,
  ``LINKS=``, ``WORD=``, ``acoustic=``, ...) and short (``N=``, ``L=``, ``W=``, ``a=``, ...) names
  are both accepted; unknown fields (``p=``, ``n=``, ``i=``, ``d=``, ...) are ignored.
- Scores: ``a=`` → ``am_scores``; ``l=`` → ``lm_scores`` (``n=``, an n-gram score some systems
  add besides ``l=``, is ignored); ``r=`` (pronunciation log-probability) is *added to*
  ``am_scores`` (the convention has only AM and LM parts). Missing fields are 0.
- ``base=``: scores are logarithms in that base (default e); they are multiplied by ``ln(base)``
  to give natural logs. ``base=0`` means the scores are plain probabilities (HTK: "0.0 not
  logs"), so their natural log is taken (0 → ``-inf`` is rejected as malformed).
- Words on links (``W=`` on ``J=`` lines, theanolm/HTK) or on nodes (AMI, pocketsphinx): a node's
  word is put on every link *entering* that node (forward lattices). If the start node itself
  carries a real word, an extra arc from a new start node carries it.
- ``start=``/``end=`` header fields pick the start and end nodes; without them the start is the
  node with no incoming links (node 0 if that is not unique) and every node without outgoing
  links is final. Final weights are 0; the end node gets a final arc (label -1).
- Node times ``t=`` give the arcs' ``start_times``/``end_times``.
- Header fields are kept in the batch header (``lmscale``, ``wdpenalty``, ``acscale``,
  ``prscale`` as floats, others as strings; ``UTTERANCE`` as ``utterance``). The utterance id is
  the file name without ``.gz``/``.slf``/``.lat``/``.htk``.

Writing follows the theanolm/HTK convention: words on links (``W=``, epsilon as ``!NULL``),
``a=``/``l=`` in natural log (no ``base=``), ``start=``/``end=`` in the header, node times ``t=``
when the batch has times. If the lattice's final arcs are a single zero-weight arc, its source
is written as the end node (so SLF → SLF round trips keep the topology exactly); otherwise the
k2 final state becomes the end node, reached by ``!NULL`` links carrying the final weights.
"""
import math
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set, Tuple

import k2
import numpy as np

from lattices.fsa_build import ArcList, intern_words, used_node_ids
from lattices.textio import format_floats, int_field, parse_numbers

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELD = re.compile(r'(' + _KEY.pattern + r')=("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|\S*)')
_LONG = {
    "NODES": "N", "LINKS": "L", "NODE": "I", "LINK": "J", "START": "S", "END": "E", "WORD": "W",
    "time": "t", "var": "v", "div": "d", "acoustic": "a", "language": "l", "ngram": "n",
    "VERSION": "V", "UTTERANCE": "U", "SUBLAT": "S_", "r": "r",
}
_HEADER_FLOATS = ("lmscale", "wdpenalty", "acscale", "prscale", "base")
_STRIP_SUFFIXES = (".gz", ".slf", ".lat", ".htk", ".txt")


def utt_id_from_path(path: str) -> str:
    """``dir/UTT.slf.gz`` → ``UTT``."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    changed = True
    while changed:
        changed = False
        for suf in _STRIP_SUFFIXES:
            if name.endswith(suf) and len(name) > len(suf):
                name = name[: -len(suf)]
                changed = True
    return name


_ESCAPE = re.compile(rb"\\([0-7]{3}|.?)", re.DOTALL)


def htk_unescape(word: str, where: str) -> str:
    """A word as HTK writes it (``ReWriteString``) back to itself: ``\\ooo`` is the byte of that
    octal code (HTK writes every byte of a UTF-8 word that way unless ``NONUMESCAPES``), and ``\\c``
    is ``c`` (``\\\\``, and a leading ``\\'`` or ``\\"``). Words without a backslash are returned as they are.

    Raises:
        ValueError: naming ``where`` when the bytes the escapes give are not UTF-8.
    """
    if "\\" not in word:
        return word
    raw = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]) if len(m.group(1)) == 3 else (m.group(1) or b"\\"),
                      word.encode("utf-8"))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{where}: word {word!r}: its HTK escapes do not give UTF-8 text") from None


def htk_escape(word: str) -> str:
    """``word`` as HTK writes a field it never quotes (``ReWriteString(..., ESCAPE_CHAR)``), so HTK
    and :func:`htk_unescape` read it back: a backslash and a leading quote are escaped, control
    characters and white space become ``\\ooo``; other characters, UTF-8 included, are written as
    they are (HTK reads any byte but white space)."""
    if word.isprintable() and not any(c.isspace() or c == "\\" for c in word) and word[:1] not in ("'", '"'):
        return word
    out = []
    for i, c in enumerate(word):
        if c == "\\" or (i == 0 and c in "'\""):
            out.append("\\" + c)
        elif c.isspace() or not c.isprintable():
            out.extend(f"\\{b:03o}" for b in c.encode("utf-8"))
        else:
            out.append(c)
    return "".join(out)


def looks_like_slf(text: str) -> bool:
    """Content sniffing: an SLF file has a size line (``N=``/``NODES=``) and ``J=``/``I=`` lines."""
    head = text[:20000]
    return bool(re.search(r"(^|\s)(N|NODES)=\d+", head)) and bool(re.search(r"(^|\n)\s*(J|I|LINK|NODE)=\d+", head))


def _fields(line: str) -> Dict[str, str]:
    if '"' not in line and "'" not in line:  # fast path: no quoted values
        fast: Dict[str, str] = {}
        for tok in line.split():
            key, sep, val = tok.partition("=")
            if not sep:
                return _fields_quoted(line)
            fast[_LONG.get(key, key)] = val
        return fast
    return _fields_quoted(line)


def _fields_quoted(line: str) -> Dict[str, str]:
    out = {}
    for m in _FIELD.finditer(line):
        key, val = m.group(1), m.group(2)
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "\"'":
            val = val[1:-1]
        out[_LONG.get(key, key)] = val
    return out


def _num(where: str, lineno: int, key: str, val: str) -> float:
    try:
        return float(val)
    except ValueError:
        raise ValueError(f"{where}:{lineno}: field {key}={val!r} is not a number") from None


@dataclass
class _Body:
    """What the line parser or the fast table parser reads from an SLF file, before checks."""

    header: Dict[str, object]
    n_nodes: Optional[int]
    n_links: Optional[int]
    node_word: Dict[int, str]
    node_time: Dict[int, float]
    src: np.ndarray
    dst: np.ndarray
    link_words: Optional[List[Optional[str]]]  # per link W= (None: no link carries W=)
    am: np.ndarray
    lm: np.ndarray


def _parse_lines(text: str, where: str) -> _Body:
    """The general parser: one line at a time, any field order, quoted values; names the bad line."""
    header: Dict[str, object] = {}
    n_nodes = n_links = None
    node_word: Dict[int, str] = {}
    node_time: Dict[int, float] = {}
    links: List[Tuple[int, int, Optional[str], float, float]] = []
    in_body = False
    for lineno, raw_line in enumerate(text.splitlines(), 1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        f = _fields(line)
        if not f:
            raise ValueError(f"{where}:{lineno}: not an SLF line: {line[:80]!r}")
        if "I" in f and "J" not in f:
            try:
                i = int_field(f["I"])
            except ValueError:
                raise ValueError(f"{where}:{lineno}: bad node id {f['I']!r}") from None
            if "t" in f:
                node_time[i] = _num(where, lineno, "t", f["t"])
            if "W" in f:
                node_word[i] = f["W"]
            in_body = True
        elif "J" in f:
            if "S" not in f or "E" not in f:
                raise ValueError(f"{where}:{lineno}: link without S= or E=: {line[:80]!r}")
            try:
                s, e = int_field(f["S"]), int_field(f["E"])
            except ValueError:
                raise ValueError(f"{where}:{lineno}: bad link end points in {line[:80]!r}") from None
            try:
                a = float(f.get("a", 0.0))
                r = float(f.get("r", 0.0))
                lm = float(f.get("l", 0.0))
            except ValueError:
                raise ValueError(f"{where}:{lineno}: a non-numeric a=, l= or r= in {line[:80]!r}") from None
            links.append((s, e, f.get("W"), a + r, lm))
            in_body = True
        elif ("N" in f or "L" in f) and not in_body:
            if "N" not in f or "L" not in f:
                raise ValueError(f"{where}:{lineno}: size line needs both N= and L=: {line[:80]!r}")
            try:
                n_nodes, n_links = int_field(f["N"]), int_field(f["L"])
            except ValueError:
                raise ValueError(f"{where}:{lineno}: bad size line {line[:80]!r}") from None
        elif not in_body:
            for k, v in f.items():
                if k == "U":
                    header["utterance"] = v
                elif k == "V":
                    header["version"] = v
                elif k in _HEADER_FLOATS:
                    header[k] = _num(where, lineno, k, v)
                else:
                    header[k] = v
        else:
            raise ValueError(f"{where}:{lineno}: unexpected line after the header: {line[:80]!r}")
    return _Body(header, n_nodes, n_links, node_word, node_time,
                 np.fromiter((x[0] for x in links), dtype=np.int64, count=len(links)),
                 np.fromiter((x[1] for x in links), dtype=np.int64, count=len(links)),
                 [x[2] for x in links] if any(x[2] is not None for x in links) else None,
                 np.fromiter((x[3] for x in links), dtype=np.float64, count=len(links)),
                 np.fromiter((x[4] for x in links), dtype=np.float64, count=len(links)))


_BODY = re.compile(r"^[ \t]*(?:I|J|NODE|LINK)=", re.M)
_FIRST_LINK = re.compile(r"^[ \t]*(?:J|LINK)=", re.M)
_SKIPPED = re.compile(r"^[ \t]*(?:#[^\n]*)?(?:\n|\Z)", re.M)  # blank and comment lines
_INDENT = re.compile(r"^[ \t]+", re.M)


def _table(part: str, wanted: Sequence[str]) -> Optional[Tuple[int, Set[str], Dict[str, str]]]:
    """Lines of ``key=value`` fields that all have the first line's layout -> ``(lines, names,
    {name: values})``: the canonical names of the line's keys, and the values of the ``wanted``
    ones joined by newlines; None when the lines differ (or a value is quoted).

    Exact: every line holds exactly the first line's fields in that order (checked by
    :func:`_numeric_columns` for plain tables, else, after blank, comment and indented lines are
    cleaned up, by :func:`_split_columns`). A value that opens a quote closed later on its line
    (the line parser's quoting) returns None; a lone leading quote (``W='bout``) is part of the
    value, as for the line parser.
    """
    table = _layout(part, wanted)
    if table is not None:
        columns = _numeric_columns(part, *table)
        if columns is not None:
            return _named(table, columns)
    if "\r" in part:
        part = part.replace("\r", "")
    if part[:1] in (" ", "\t") or "\n " in part or "\n\t" in part:
        part = _INDENT.sub("", part)
    if "#" in part or "\n\n" in part or part[:1] == "\n":
        part = _SKIPPED.sub("", part)
    if not part:
        return 0, set(), {}
    for quote in ("'", '"'):  # a quoted value (the same quote again on its line) needs the line parser
        at = part.find("=" + quote) if quote in part else -1
        while at >= 0:
            end = part.find("\n", at)
            if quote in part[at + 2: end if end >= 0 else len(part)]:
                return None
            at = part.find("=" + quote, at + 2)
    table = _layout(part, wanted)
    columns = _split_columns(part, *table) if table is not None else None
    return _named(table, columns) if columns is not None else None


_Layout = Tuple[List[str], int, List[int]]


def _layout(part: str, wanted: Sequence[str]) -> Optional[_Layout]:
    """The first line's keys, the number of lines, and the positions of the ``wanted`` keys; None
    if the first line is not distinct ``key=value`` fields whose keys are names (the line parser
    finds fields by name: in ``"a=1`` it reads ``a=1``)."""
    end = part.find("\n")
    first = part[: end if end >= 0 else len(part)].split()
    keys = [t.partition("=")[0] for t in first]
    if (not keys or any("=" not in t or not _KEY.fullmatch(k) for t, k in zip(first, keys))
            or len(set(keys)) != len(keys)):
        return None
    n_lines = part.count("\n") + (0 if part.endswith("\n") else 1)
    return keys, n_lines, [j for j, key in enumerate(keys) if _LONG.get(key, key) in wanted]


def _named(table: _Layout, columns: List[str]) -> Tuple[int, Set[str], Dict[str, str]]:
    keys, n_lines, use = table
    names = [_LONG.get(key, key) for key in keys]
    return n_lines, set(names), {names[j]: values for j, values in zip(use, columns)}


_NUMBER_BYTES = b"0123456789.-+eE"
_TAB_TO_SPACE = bytes.maketrans(b"\t", b" ")


def _numeric_columns(part: str, keys: List[str], n_lines: int, use: Sequence[int]) -> Optional[List[str]]:
    """Columns ``use`` of a table whose values are all made of number characters, found from byte
    positions instead of a split into tokens (pocketsphinx's link lines); None when a value has
    another character, or the layout differs.

    Exact: with the number characters deleted (those that no key uses) and tabs read as spaces,
    every line must read ``k0= k1= ... kn=``, and each key's bytes must stand just before its
    ``=``, after a space, tab or newline (or at the start). So each line is the first line's keys
    in order, each followed by ``=``, a value of number characters only, and one space, tab or the
    newline: the tokens that :func:`_split_columns` checks, with the same values (maybe empty).
    """
    data = part.encode()
    if not data.endswith(b"\n"):
        data += b"\n"
    in_keys = set("".join(keys).encode())
    delete = bytes(c for c in _NUMBER_BYTES if c not in in_keys)
    if data.translate(_TAB_TO_SPACE, delete) != (" ".join(k + "=" for k in keys) + "\n").encode() * n_lines:
        return None
    buf = np.frombuffer(data, dtype=np.uint8)
    equals = np.flatnonzero(buf == ord("=")).reshape(n_lines, len(keys))
    for j, key in enumerate(keys):
        name = np.frombuffer(key.encode(), dtype=np.uint8)
        begin = equals[:, j] - len(name)
        if not np.array_equal(buf[begin[:, None] + np.arange(len(name))], np.broadcast_to(name, (n_lines, len(name)))):
            return None
        if j == 0 and begin[0] != 0:
            return None
        if not np.all(buf[begin[1:] - 1 if j == 0 else begin - 1] <= ord(" ")):
            return None
    # The separator after a value is just before the next key (the next line's first key after
    # the last value of a line; the final newline after the last line).
    key_after = equals[:, 1:] - np.array([len(k.encode()) + 1 for k in keys[1:]], dtype=np.int64)
    line_ends = np.append(equals[1:, 0] - (len(keys[0].encode()) + 1), len(buf) - 1)
    columns = []
    for j in use:
        start = equals[:, j] + 1
        size = (key_after[:, j] if j + 1 < len(keys) else line_ends) - start + 1  # value + separator
        last = np.cumsum(size)
        out = buf[np.arange(last[-1]) + np.repeat(start - (last - size), size)]
        out[last - 1] = ord("\n")
        columns.append(out[:-1].tobytes().decode())
    return columns


def _split_columns(part: str, keys: List[str], n_lines: int, use: Sequence[int]) -> Optional[List[str]]:
    """Columns ``use`` of a table, from a split into tokens (any values); None unless the layout holds.

    Exact: the token count must be lines x fields, every line must start with the first key, and
    every token of column j must start with key j; the keys are distinct, so each line then holds
    exactly the first line's fields in order.
    """
    tokens = part.split()
    n = len(keys)
    if len(tokens) != n_lines * n or ("\n" + part).count("\n" + keys[0] + "=") != n_lines:
        return None
    columns = {}
    for j, key in enumerate(keys):
        joined = "\n" + "\n".join(tokens[j::n])
        if joined.count("\n" + key + "=") != n_lines:
            return None
        if j in use:
            columns[j] = joined.replace("\n" + key + "=", "\n")[1:]
    return [columns[j] for j in use]


def _parse_fast(text: str, where: str) -> Optional[_Body]:
    """Vectorised parse for the usual layout: a header, then node lines, then link lines, every
    node line with the same fields in the same order, likewise every link line. None otherwise
    (the caller then uses :func:`_parse_lines`)."""
    m = _BODY.search(text)
    if m is None:
        return None
    parsed = _parse_lines(text[: m.start()], where)  # the header: a few lines
    if parsed.n_nodes is None or len(parsed.src) or parsed.node_word or parsed.node_time:
        return None
    body = text[m.start():]
    j = _FIRST_LINK.search(body)
    node_table = _table(body[: j.start()] if j else body, ("I", "t", "W"))
    link_table = _table(body[j.start():], ("S", "E", "W", "a", "r", "l")) if j else (0, set(), {})
    if node_table is None or link_table is None:
        return None
    (n_node_lines, _, nodes), (n_links, link_keys, links) = node_table, link_table
    if (n_node_lines and "I" not in nodes) or (n_links and not {"J", "S", "E"} <= link_keys):
        return None
    src, dst = parse_numbers(links.get("S"), n_links, np.int64), parse_numbers(links.get("E"), n_links, np.int64)
    am, r, lm = (parse_numbers(links.get(k), n_links, np.float64) for k in ("a", "r", "l"))
    if src is None or dst is None or am is None or r is None or lm is None:
        return None
    if n_node_lines:
        ids = parse_numbers(nodes["I"], n_node_lines, np.int64)
        times = parse_numbers(nodes["t"], n_node_lines, np.float64) if "t" in nodes else None
        if ids is None or ("t" in nodes and times is None):
            return None
        parsed.node_time = dict(zip(ids.tolist(), times.tolist())) if times is not None else {}
        parsed.node_word = dict(zip(ids.tolist(), nodes["W"].split("\n"))) if "W" in nodes else {}
    parsed.src, parsed.dst, parsed.am, parsed.lm = src, dst, am + r, lm
    parsed.link_words = links["W"].split("\n") if "W" in links else None
    return parsed


def parse_slf(text: str, source: str, utt_id: Optional[str] = None) -> ArcList:
    """Parse one SLF lattice.

    The usual layout (header, node lines, link lines, each kind with one field order) is parsed
    by a vectorised table parser; anything else by the general line parser, which gives the same
    lattice and names the offending line in its errors.

    Args:
        text: the file's text.
        source: file path (for messages and the default utterance id).
        utt_id: overrides the id taken from the file name.

    Returns:
        The lattice as an :class:`ArcList` (words not yet normalised).

    Raises:
        ValueError: malformed input, naming ``source`` and the line.
    """
    utt = utt_id or utt_id_from_path(source)
    where = f"{source}:{utt}"
    parsed = _parse_fast(text, where) or _parse_lines(text, where)
    header, n_nodes, n_links = parsed.header, parsed.n_nodes, parsed.n_links
    node_word, node_time = parsed.node_word, parsed.node_time
    src, dst, am, lm = parsed.src, parsed.dst, parsed.am, parsed.lm
    if n_nodes is None:
        raise ValueError(f"{where}: not an SLF lattice (no N=/NODES= size line)")
    if len(src) != n_links:
        raise ValueError(f"{where}: header says L={n_links} links, found {len(src)}")
    if n_nodes <= 0:
        raise ValueError(f"{where}: empty lattice (N={n_nodes})")
    for i in list(node_word) + list(node_time):
        if not 0 <= i < n_nodes:
            raise ValueError(f"{where}: node I={i} outside 0..{n_nodes - 1}")

    base = float(header.get("base", math.e))  # type: ignore[arg-type]
    if base == 0.0:
        with np.errstate(divide="ignore", invalid="ignore"):
            am, lm = np.log(am), np.log(lm)
        if not (np.all(np.isfinite(am)) and np.all(np.isfinite(lm))):
            raise ValueError(f"{where}: base=0 (plain probabilities) but a score is <= 0")
    elif base != math.e:
        if base < 0 or base == 1:
            raise ValueError(f"{where}: invalid base={base}")
        am, lm = am * math.log(base), lm * math.log(base)

    if len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n_nodes):
        raise ValueError(f"{where}: a link refers to a node outside 0..{n_nodes - 1}")
    ends = {k: _int_header(where, header, k) for k in ("start", "end") if k in header}
    for k, v in ends.items():
        if not 0 <= v < n_nodes:
            raise ValueError(f"{where}: {k}={v} outside 0..{n_nodes - 1}")
    used = used_node_ids(n_nodes, [src, dst, np.fromiter(node_word, np.int64, len(node_word)),
                                   np.fromiter(node_time, np.int64, len(node_time)), np.array(list(ends.values()), np.int64)])
    if used is not None:  # N is far larger than the nodes the file mentions: number only those
        src, dst = np.searchsorted(used, src), np.searchsorted(used, dst)
        node_word = {int(np.searchsorted(used, k)): v for k, v in node_word.items()}
        node_time = {int(np.searchsorted(used, k)): v for k, v in node_time.items()}
        ends = {k: int(np.searchsorted(used, v)) for k, v in ends.items()}
        n_nodes = len(used)
    has_in = np.zeros(n_nodes, dtype=bool)
    has_out = np.zeros(n_nodes, dtype=bool)
    has_in[dst] = True
    has_out[src] = True
    if "start" in ends:
        start = ends["start"]
    else:
        cands = np.nonzero(~has_in & has_out)[0]
        if len(cands) > 1:
            raise ValueError(f"{where}: {len(cands)} nodes have no incoming link (I={', '.join(map(str, cands[:5].tolist()))}"
                             f"{', ...' if len(cands) > 5 else ''}) and there is no start=: which one starts the lattice "
                             "is ambiguous; add start=")
        start = int(cands[0]) if len(cands) == 1 else 0
    if "end" in ends:
        finals = {ends["end"]: (0.0, 0.0)}
    else:
        finals = {int(i): (0.0, 0.0) for i in np.nonzero(has_in & ~has_out)[0]}
        if not finals:
            raise ValueError(f"{where}: no end node (no end= and every node has outgoing links)")

    have_times = bool(node_time) and len(node_time) == n_nodes
    t = None
    if have_times:
        t = np.zeros(n_nodes)
        t[np.fromiter(node_time.keys(), dtype=np.int64, count=len(node_time))] = list(node_time.values())
    word_types, word_index = _link_words(parsed.link_words, node_word, dst, n_nodes)
    num_nodes = n_nodes
    # A real word on the start node (words on nodes, and no link enters the start): add an arc.
    if start in node_word and not has_in[start] and node_word[start] not in ("!NULL", "<eps>"):
        new_start = num_nodes
        num_nodes += 1
        src = np.concatenate([[new_start], src])
        dst = np.concatenate([[start], dst])
        word_types = word_types + [node_word[start]]
        word_index = np.concatenate([[len(word_types) - 1], word_index])
        am = np.concatenate([[0.0], am])
        lm = np.concatenate([[0.0], lm])
        if t is not None:
            t = np.concatenate([t, [t[start]]])
        start = new_start
    word_types = [None if w is None else htk_unescape(w, where) for w in word_types]
    return ArcList(
        utt_id=utt, source=source, num_nodes=num_nodes, start=start, finals=finals,
        src=src, dst=dst, word_types=word_types, word_index=word_index, am=am, lm=lm,
        start_times=t[src] if t is not None else None, end_times=t[dst] if t is not None else None,
        header=header,
    )


def _link_words(link_words: Optional[List[Optional[str]]], node_word: Dict[int, str], dst: np.ndarray,
                n_nodes: int) -> Tuple[List[Optional[str]], np.ndarray]:
    """Each link's word as ``(distinct words, index per link)``: its own ``W=``, else the word of
    the node it enters (forward lattices); None (epsilon) when neither has one."""
    if link_words is not None and all(w is not None for w in link_words):
        return intern_words(link_words)
    types, node_type = intern_words([None] + list(node_word.values()))
    of_node = np.zeros(n_nodes, dtype=np.int64)  # type 0: None
    of_node[np.fromiter(node_word.keys(), dtype=np.int64, count=len(node_word))] = node_type[1:]
    if link_words is None:
        return types, of_node[dst]
    words = [w if w is not None else types[of_node[d]] for w, d in zip(link_words, dst.tolist())]
    return intern_words(words)


def _int_header(where: str, header: Dict[str, object], key: str) -> int:
    try:
        return int_field(str(header[key]))
    except ValueError:
        raise ValueError(f"{where}: header {key}={header[key]!r} is not a node number") from None


def format_slf(fsa: k2.Fsa, symbols: k2.SymbolTable, utt_id: str, header: Optional[Dict[str, object]] = None) -> str:
    """Write one lattice (a single k2 Fsa in the batch convention) as SLF text.

    Args:
        fsa: one FSA ``[state][arc]`` with ``labels``, ``am_scores``, ``lm_scores`` and optional times.
        symbols: word table for ``labels``.
        utt_id: written as ``UTTERANCE=``.
        header: kept header fields (``lmscale``, ``wdpenalty``, ``acscale``, ``prscale``, ``lmname``).

    Returns:
        The SLF text (words on links).
    """
    header = header or {}
    arcs = fsa.as_dict()["arcs"][:, :3].tolist()
    am = fsa.am_scores.tolist()
    lm = fsa.lm_scores.tolist()
    am_s = format_floats(fsa.am_scores)
    lm_s = format_floats(fsa.lm_scores)
    has_t = hasattr(fsa, "start_times") and hasattr(fsa, "end_times")
    st = fsa.start_times.tolist() if has_t else None
    et = fsa.end_times.tolist() if has_t else None
    num_states = fsa.shape[0]
    if num_states == 0:
        raise ValueError(f"{utt_id}: cannot write an empty lattice as SLF")
    final_state = num_states - 1
    final_arcs = [i for i, a in enumerate(arcs) if a[2] == -1]
    collapse = len(final_arcs) == 1 and am[final_arcs[0]] == 0.0 and lm[final_arcs[0]] == 0.0
    if collapse:
        end_node = arcs[final_arcs[0]][0]
        skip = {final_arcs[0]}
        n_nodes = num_states - 1
    else:
        end_node = final_state
        skip = set()
        n_nodes = num_states
    node_t: List[Optional[float]] = [None] * num_states
    if has_t:
        for i, a in enumerate(arcs):
            if node_t[a[0]] is None:
                node_t[a[0]] = st[i]  # type: ignore[index]
            node_t[a[1]] = et[i]  # type: ignore[index]
    lines = ["VERSION=1.1", f'UTTERANCE="{utt_id}"' if any(c.isspace() for c in utt_id) else f"UTTERANCE={utt_id}"]
    for k in ("lmname", "lmscale", "wdpenalty", "acscale", "prscale"):
        if k in header and header[k] is not None:
            lines.append(f"{k}={header[k]}")
    lines.append(f"start=0 end={end_node}")
    n_links = len(arcs) - len(skip)
    lines.append(f"N={n_nodes} L={n_links}")
    for i in range(n_nodes):
        lines.append(f"I={i} t={node_t[i]:.2f}" if has_t and node_t[i] is not None else f"I={i}")
    j = 0
    for i, a in enumerate(arcs):
        if i in skip:
            continue
        lab = a[2]
        word = "!NULL" if lab <= 0 else htk_escape(symbols.get(lab))
        lines.append(f"J={j} S={a[0]} E={a[1]} W={word} a={am_s[i]} l={lm_s[i]}")
        j += 1
    return "\n".join(lines) + "\n"
