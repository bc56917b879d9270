"""Draw one lattice with graphviz (SVG, PNG, PDF, or the DOT source).

Layout is left to right; each arc shows its word and scaled score, best-path arcs are drawn bold
red, epsilon arcs dashed grey; SVG tooltips carry ``am``/``lm`` and times when present.
"""
import os
import shutil
from typing import List, Optional

import k2

from lattices.lattice_batch import with_scales
from lattices.validate import arc_arrays
from models.files import atomic_open

FORMATS = ("svg", "png", "pdf", "dot", "gv")


def lattice_to_dot(
    fsas: k2.Fsa,
    index: int,
    symbols: k2.SymbolTable,
    title: str = "",
    am_scale: float = 1.0,
    lm_scale: float = 1.0,
    word_penalty: float = 0.0,
) -> str:
    """Graphviz DOT source for lattice ``index`` of a connected, top-sorted FsaVec ``[utt][state][arc]``.

    Returns:
        The DOT text (``digraph``); the input is not mutated.
    """
    import graphviz  # imported lazily: only drawing needs it

    scored = with_scales(fsas, am_scale, lm_scale, word_penalty)
    arrays = arc_arrays(fsas)
    s0, s1 = int(arrays.state_splits[index]), int(arrays.state_splits[index + 1])
    a0, a1 = int(arrays.arc_splits[s0]), int(arrays.arc_splits[s1])
    best_arcs = set()
    if s1 > s0:
        from lattices.posteriors import arc_viterbi_scores

        vit = arc_viterbi_scores(scored)[a0:a1]
        best_arcs = set((vit >= -1e-6 * (1 + float(vit.abs().max()))).nonzero().flatten().tolist())
    labels = arrays.labels[a0:a1].tolist()
    src = (arrays.src[a0:a1] - s0).tolist()
    dst = (arrays.dst[a0:a1] - s0).tolist()
    score = scored.scores[a0:a1].tolist()
    am = fsas.am_scores[a0:a1].tolist()
    lm = fsas.lm_scores[a0:a1].tolist()
    has_times = hasattr(fsas, "start_times") and hasattr(fsas, "end_times")
    if has_times:
        t0 = fsas.start_times[a0:a1].tolist()
        t1 = fsas.end_times[a0:a1].tolist()

    g = graphviz.Digraph(name="lattice")
    g.attr(rankdir="LR", label=title, labelloc="t", fontsize="12", fontname="Helvetica")
    g.attr("node", shape="circle", fontsize="8", width="0.25", height="0.25", fixedsize="true",
           fontname="Helvetica")
    g.attr("edge", fontsize="8", arrowsize="0.4", fontname="Helvetica")
    final = s1 - s0 - 1
    for s in range(s1 - s0):
        if s == 0:
            g.node(str(s), shape="circle", style="bold")
        elif s == final:
            g.node(str(s), shape="doublecircle")
        else:
            g.node(str(s))
    for k in range(a1 - a0):
        w = labels[k]
        word = "" if w == -1 else ("<eps>" if w == 0 else symbols.get(w))
        tip = f"am={am[k]:.3f} lm={lm[k]:.3f}"
        if has_times:
            tip += f" t={t0[k]:.2f}-{t1[k]:.2f}s"
        attrs = {"label": f"{word}/{score[k]:.2f}" if word else f"{score[k]:.2f}", "tooltip": tip}
        if w <= 0:
            attrs.update(style="dashed", color="grey50", fontcolor="grey40")
        if k in best_arcs:
            attrs.update(color="red", fontcolor="red", penwidth="2", style="bold")
        g.edge(str(src[k]), str(dst[k]), **attrs)
    return g.source


def draw_lattice(
    fsas: k2.Fsa,
    index: int,
    symbols: k2.SymbolTable,
    out: str,
    title: str = "",
    am_scale: float = 1.0,
    lm_scale: float = 1.0,
    word_penalty: float = 0.0,
) -> None:
    """Render lattice ``index`` to ``out``; the format comes from its suffix (see ``FORMATS``).

    Raises:
        ValueError: unknown output suffix.
        RuntimeError: graphviz's ``dot`` program is needed (svg/png/pdf) but not installed.
    """
    ext = os.path.splitext(out)[1].lstrip(".").lower()
    if ext not in FORMATS:
        raise ValueError(f"{out}: unknown output format {ext!r}; use one of {', '.join(FORMATS)}")
    source = lattice_to_dot(fsas, index, symbols, title, am_scale, lm_scale, word_penalty)
    if ext in ("dot", "gv"):
        with atomic_open(out, "w") as f:
            f.write(source)
        return
    if shutil.which("dot") is None:
        raise RuntimeError(
            "graphviz's 'dot' program is not installed (e.g. `apt-get install graphviz`); "
            "write a .dot file instead"
        )
    import graphviz

    data = graphviz.Source(source).pipe(format=ext)
    with atomic_open(out, "wb") as f:
        f.write(data)


def find_utterance(utt_ids: List[str], utt: str) -> Optional[int]:
    """Index of ``utt`` in ``utt_ids``, or None."""
    try:
        return utt_ids.index(utt)
    except ValueError:
        return None
