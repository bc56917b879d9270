"""Write a :class:`~lattices.lattice_batch.LatticeBatch` in any supported format (atomically).

- ``"slf"``: ``out`` is a directory; one ``UTT.slf`` per utterance (``UTT.slf.gz`` if ``out``
  ends with ``.gz``, e.g. ``lats.gz/``); see :func:`lattices.slf.format_slf` for the conventions.
- ``"k2"``: ``out`` is one file (``.pt`` or ``.pt.gz``), ``torch.save(fsa.as_dict())`` plus
  utterance ids and symbols (:func:`lattices.k2_format.save_k2`).
- ``"kaldi"``: ``out`` is one binary CompactLattice archive, as Kaldi writes by default (``.gz``
  gzips it), and ``words.txt`` is written next to it; ``"kaldi-text"``: the same as text
  (``ark,t``). See :func:`lattices.kaldi_archive.kaldi_archive_bytes`.
"""
import os

from lattices.k2_format import save_k2
from lattices.kaldi_archive import kaldi_archive_bytes
from lattices.lattice_batch import LatticeBatch
from lattices.slf import format_slf
from lattices.symbols import write_symbols
from models.files import atomic_open

WRITE_FORMATS = ("k2", "slf", "kaldi", "kaldi-text")


def _safe_name(utt_id: str) -> str:
    if not utt_id or utt_id in (".", "..") or "/" in utt_id or "\0" in utt_id:
        raise ValueError(f"utterance id {utt_id!r} cannot be used as a file name")
    return utt_id


def write_lattices(batch: LatticeBatch, out: str, fmt: str) -> None:
    """Write ``batch`` to ``out`` in format ``fmt`` (one of :data:`WRITE_FORMATS`).

    Every file is written atomically (a reader never sees a partial file). ``batch`` is not
    modified.

    Raises:
        ValueError: unknown ``fmt``, or a lattice the format cannot represent (named by utterance).
    """
    if fmt not in WRITE_FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; expected one of {', '.join(WRITE_FORMATS)}")
    if fmt == "k2":
        save_k2(batch, out)
        return
    if fmt == "slf":
        suffix = ".slf.gz" if out.rstrip("/").endswith(".gz") else ".slf"
        os.makedirs(out, exist_ok=True)
        for i, utt in enumerate(batch.utt_ids):
            text = format_slf(batch.fsas[i], batch.symbols, utt, batch.headers[i])
            with atomic_open(os.path.join(out, _safe_name(utt) + suffix), "w") as f:
                f.write(text)
        return
    with atomic_open(out, "wb") as f:
        f.write(kaldi_archive_bytes(batch, binary=fmt == "kaldi"))
    write_symbols(batch.symbols, os.path.join(os.path.dirname(os.path.abspath(out)), "words.txt"))
