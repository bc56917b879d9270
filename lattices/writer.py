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
from contextlib import ExitStack
from typing import IO, List, Optional

import k2

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
    write_symbols(batch.symbols, _words_txt_beside(out))


def _words_txt_beside(archive: str) -> str:
    """The ``words.txt`` written next to a Kaldi archive (where readers look for it)."""
    return os.path.join(os.path.dirname(os.path.abspath(archive)), "words.txt")


class LatticeSink:
    """Lattices written batch by batch to what :func:`write_lattices` writes for the whole set.

    Batches must share their word ids (as :func:`lattices.reader.iter_lattice_batches` gives them:
    a later batch's table extends an earlier one's). ``slf``: each utterance's file is written with
    its batch; ``kaldi``/``kaldi-text``: one archive, appended to batch by batch and made visible
    (with the last batch's ``words.txt``, which holds every word) when the stack closes; ``k2``: one
    file is one ``torch.save``, so the batches are kept and saved together by :meth:`close`, or,
    with ``k2_per_batch``, ``out`` is a directory of one ``NNNNN.pt`` per batch. Nothing is made
    visible when the ``ExitStack`` unwinds on an exception.
    """

    def __init__(self, stack: ExitStack, out: str, fmt: str, k2_per_batch: bool = False) -> None:
        if fmt not in WRITE_FORMATS:
            raise ValueError(f"unknown output format {fmt!r}; expected one of {', '.join(WRITE_FORMATS)}")
        self.out, self.fmt, self.k2_per_batch, self.stack = out, fmt, k2_per_batch, stack
        self.archive: Optional[IO[bytes]] = None  # opened with the first lattice
        self.kept: List[LatticeBatch] = []  # k2 in one file
        self.symbols: Optional[k2.SymbolTable] = None
        self.batches = 0
        self.lattices = 0

    def add(self, batch: LatticeBatch) -> None:
        """Write (or, for a single k2 file, keep) one batch; an empty one is skipped."""
        if not len(batch):
            return
        self.symbols = batch.symbols
        if self.fmt in ("kaldi", "kaldi-text"):
            if self.archive is None:
                self.archive = self.stack.enter_context(atomic_open(self.out, "wb"))
            self.archive.write(kaldi_archive_bytes(batch, binary=self.fmt == "kaldi"))
        elif self.fmt == "k2" and self.k2_per_batch:
            write_lattices(batch, os.path.join(self.out, f"{self.batches:05d}.pt"), "k2")
        elif self.fmt == "k2":
            self.kept.append(batch)
        else:
            write_lattices(batch, self.out, self.fmt)
        self.batches += 1
        self.lattices += len(batch)

    def close(self) -> None:
        """Write what only the whole set knows (the archive's ``words.txt``, a single k2 file)."""
        if self.archive is not None and self.symbols is not None:
            write_symbols(self.symbols, _words_txt_beside(self.out))
        if self.kept:
            last = self.kept[-1]
            fsas = k2.cat([b.fsas for b in self.kept]) if len(self.kept) > 1 else last.fsas
            save_k2(LatticeBatch(fsas, [u for b in self.kept for u in b.utt_ids], last.symbols,
                                 [h for b in self.kept for h in b.headers]), self.out)
