"""HTK Standard Lattice Format (SLF): parse into an :class:`~lattices.fsa_build.ArcList`, format out.

Reading (HTK book ch. "HTK Standard Lattice Format"):

- Fields are ``name=value`` separated by white space, values may be ``"quoted"``; ``#`` lines are
  comments. Long (``NODES=``, ``LINKS=``, ``WORD=``, ``acoustic=``, ...) and short (``N=``, ``L=``,
  ``W=``, ``a=``, ...) names are both accepted; unknown fields (``p=``, ``n=``, ``i=``, ``d=``, ...)
  are ignored.
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
from typing import Dict, List, Optional, Tuple

import k2
import numpy as np

from lattices.fsa_build import ArcList
from lattices.textio import format_floats

_FIELD = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|\S*)')
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


def parse_slf(text: str, source: str, utt_id: Optional[str] = None) -> ArcList:
    """Parse one SLF lattice.

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
                i = int(f["I"])
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
                s, e = int(f["S"]), int(f["E"])
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
                n_nodes, n_links = int(f["N"]), int(f["L"])
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
    if n_nodes is None:
        raise ValueError(f"{where}: not an SLF lattice (no N=/NODES= size line)")
    if len(links) != n_links:
        raise ValueError(f"{where}: header says L={n_links} links, found {len(links)}")
    if n_nodes <= 0:
        raise ValueError(f"{where}: empty lattice (N={n_nodes})")
    for i in list(node_word) + list(node_time):
        if not 0 <= i < n_nodes:
            raise ValueError(f"{where}: node I={i} outside 0..{n_nodes - 1}")

    src = np.fromiter((x[0] for x in links), dtype=np.int64, count=len(links))
    dst = np.fromiter((x[1] for x in links), dtype=np.int64, count=len(links))
    am = np.fromiter((x[3] for x in links), dtype=np.float64, count=len(links))
    lm = np.fromiter((x[4] for x in links), dtype=np.float64, count=len(links))
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
    words: List[Optional[str]] = [x[2] if x[2] is not None else node_word.get(x[1]) for x in links]

    has_in = np.zeros(n_nodes, dtype=bool)
    has_out = np.zeros(n_nodes, dtype=bool)
    if len(links):
        if min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n_nodes:
            raise ValueError(f"{where}: a link refers to a node outside 0..{n_nodes - 1}")
        has_in[dst] = True
        has_out[src] = True
    if "start" in header:
        start = _int_header(where, header, "start")
    else:
        cands = np.nonzero(~has_in & has_out)[0]
        start = int(cands[0]) if len(cands) == 1 else 0
    if "end" in header:
        finals = {_int_header(where, header, "end"): (0.0, 0.0)}
    else:
        finals = {int(i): (0.0, 0.0) for i in np.nonzero(has_in & ~has_out)[0]}
        if not finals:
            raise ValueError(f"{where}: no end node (no end= and every node has outgoing links)")
    for k in ("start", "end"):
        v = header.get(k)
        if v is not None and not 0 <= int(v) < n_nodes:  # type: ignore[arg-type]
            raise ValueError(f"{where}: {k}={v} outside 0..{n_nodes - 1}")

    have_times = bool(node_time) and len(node_time) == n_nodes
    t = np.array([node_time.get(i, 0.0) for i in range(n_nodes)]) if have_times else None
    num_nodes = n_nodes
    # A real word on the start node (words on nodes, and no link enters the start): add an arc.
    if start in node_word and not has_in[start] and node_word[start] not in ("!NULL", "<eps>"):
        new_start = num_nodes
        num_nodes += 1
        src = np.concatenate([[new_start], src])
        dst = np.concatenate([[start], dst])
        words = [node_word[start]] + words
        am = np.concatenate([[0.0], am])
        lm = np.concatenate([[0.0], lm])
        if t is not None:
            t = np.concatenate([t, [t[start]]])
        start = new_start
    return ArcList(
        utt_id=utt, source=source, num_nodes=num_nodes, start=start, finals=finals,
        src=src, dst=dst, words=words, am=am, lm=lm,
        start_times=t[src] if t is not None else None, end_times=t[dst] if t is not None else None,
        header=header,
    )


def _int_header(where: str, header: Dict[str, object], key: str) -> int:
    try:
        return int(str(header[key]))
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
        word = "!NULL" if lab <= 0 else symbols.get(lab)
        lines.append(f"J={j} S={a[0]} E={a[1]} W={word} a={am_s[i]} l={lm_s[i]}")
        j += 1
    return "\n".join(lines) + "\n"
