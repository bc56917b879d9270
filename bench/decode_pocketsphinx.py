#!/usr/bin/env python
"""Decode LibriSpeech audio with pocketsphinx into HTK SLF word lattices (reproducible).

The recording list comes from lhotse's LibriSpeech recipe
(:func:`lhotse.recipes.prepare_librispeech`). The corpus folder may be a LibriSpeech *part*
(``SPK/CHAPTER/SPK-CHAPTER-UTT.flac`` + ``SPK-CHAPTER.trans.txt`` directly inside, as in
``../shared/data/librispeech-test-other-100``): it is then linked as ``<out>/corpus/<part>``
so that the recipe finds it.

Outputs in ``--out``:
    manifests/       lhotse recordings/supervisions (``librispeech_*_<part>.jsonl.gz``)
    lats/UTT.slf.gz  one pocketsphinx SLF lattice per utterance (words on nodes, ``a=`` per link)
    ref.txt          Kaldi text: ``utt-id WORDS`` (references, as given: upper case)
    hyp.txt          Kaldi text: pocketsphinx 1-best, fillers removed, upper-cased
    decode.log       per-utterance timing

Example::

    .venv/bin/python bench/decode_pocketsphinx.py \
        --corpus ../shared/data/librispeech-test-other-100 --part test-other \
        --out exp/librispeech --jobs 2

Requires ``pip install pocketsphinx==5.1.1`` (the model ships in the wheel). Decoding is
deterministic for a given pocketsphinx version and model.
"""
import argparse
import os
import re
import sys
import time
from multiprocessing import Pool
from typing import List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from models.files import atomic_open  # noqa: E402

FILLER = re.compile(r"^(<.*>|\[.*\]|\+\+.*\+\+)$")
VARIANT = re.compile(r"\(\d+\)$")

_DECODER = None


def _decoder(beam_opts: Tuple[Tuple[str, object], ...]):
    global _DECODER
    if _DECODER is None:
        from pocketsphinx import Decoder, set_loglevel

        set_loglevel("FATAL")
        _DECODER = Decoder(samprate=16000, bestpath=True, **dict(beam_opts))
    return _DECODER


def clean_hyp(text: str) -> str:
    """pocketsphinx 1-best → reference style: drop fillers, ``word(2)`` → ``word``, upper case."""
    out = []
    for w in text.split():
        if FILLER.match(w):
            continue
        out.append(VARIANT.sub("", w).upper())
    return " ".join(out)


def decode_one(job: Tuple[str, str, str, Tuple[Tuple[str, object], ...]]) -> Tuple[str, str, float, float]:
    """Decode one recording; write its lattice atomically. Returns (utt_id, hyp, audio s, cpu s)."""
    utt_id, audio_path, lat_path, beam_opts = job
    from lhotse import Recording

    rec = Recording.from_file(audio_path, recording_id=utt_id)
    samples = rec.load_audio()[0]  # float32 in [-1, 1], 16 kHz
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    dec = _decoder(beam_opts)
    t0 = time.process_time()
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    cpu = time.process_time() - t0
    hyp = dec.hyp()
    lattice = dec.get_lattice()
    if lattice is None:
        raise RuntimeError(f"pocketsphinx produced no lattice for {utt_id} ({audio_path})")
    tmp = lat_path[: -len(".gz")] + ".tmp" if lat_path.endswith(".gz") else lat_path + ".tmp"
    lattice.write_htk(tmp)
    with open(tmp, "r", encoding="utf-8") as f:
        text = f.read()
    os.remove(tmp)
    with atomic_open(lat_path, "w") as f:
        f.write(text)
    return utt_id, clean_hyp(hyp.hypstr if hyp is not None else ""), rec.duration, cpu


def recording_list(corpus: str, part: str, out: str) -> List[Tuple[str, str, str]]:
    """Use lhotse's LibriSpeech recipe; returns ``[(utt_id, flac path, reference)]`` sorted by id."""
    from lhotse.recipes import prepare_librispeech

    corpus = os.path.abspath(corpus)
    if os.path.isdir(os.path.join(corpus, part)):
        root = corpus
    else:  # the folder *is* the part: give the recipe the layout it expects
        root = os.path.join(os.path.abspath(out), "corpus")
        os.makedirs(root, exist_ok=True)
        link = os.path.join(root, part)
        if not os.path.islink(link):
            os.symlink(corpus, link)
    manifests = prepare_librispeech(root, dataset_parts=[part], output_dir=os.path.join(out, "manifests"))
    if part not in manifests:
        raise ValueError(f"lhotse found no LibriSpeech part {part!r} under {root}")
    recs = manifests[part]["recordings"]
    sups = {s.recording_id: s.text for s in manifests[part]["supervisions"]}
    items = []
    for rec in recs:
        items.append((rec.id, rec.sources[0].source, sups[rec.id]))
    return sorted(items)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True, help="LibriSpeech root or one part folder")
    ap.add_argument("--part", default="test-other")
    ap.add_argument("--out", required=True)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="decode only the first N (0 = all)")
    ap.add_argument("--gz", action="store_true", help="write UTT.slf.gz instead of UTT.slf")
    args = ap.parse_args(argv)

    items = recording_list(args.corpus, args.part, args.out)
    if args.limit:
        items = items[: args.limit]
    lat_dir = os.path.join(args.out, "lats")
    os.makedirs(lat_dir, exist_ok=True)
    suffix = ".slf.gz" if args.gz else ".slf"
    jobs = [(u, p, os.path.join(lat_dir, u + suffix), ()) for u, p, _ in items]
    t0 = time.time()
    if args.jobs > 1:
        with Pool(args.jobs) as pool:
            results = pool.map(decode_one, jobs, chunksize=1)
    else:
        results = [decode_one(j) for j in jobs]
    wall = time.time() - t0
    hyps = {u: h for u, h, _, _ in results}
    audio = sum(r[2] for r in results)
    cpu = sum(r[3] for r in results)
    with atomic_open(os.path.join(args.out, "ref.txt")) as f:
        for u, _, ref in items:
            f.write(f"{u} {ref}\n")
    with atomic_open(os.path.join(args.out, "hyp.txt")) as f:
        for u, _, _ in items:
            f.write(f"{u} {hyps[u]}\n".replace(" \n", "\n"))
    with atomic_open(os.path.join(args.out, "decode.log")) as f:
        for u, _, dur, c in results:
            f.write(f"{u} audio_s={dur:.2f} decode_cpu_s={c:.2f}\n")
        f.write(f"total utts={len(results)} audio_s={audio:.1f} decode_cpu_s={cpu:.1f} "
                f"wall_s={wall:.1f} jobs={args.jobs} rtf_cpu={cpu / max(audio, 1e-9):.3f}\n")
    print(f"decoded {len(results)} utterances ({audio:.1f} s audio) in {wall:.1f} s wall, "
          f"{cpu:.1f} s decoder CPU (RTF {cpu / max(audio, 1e-9):.3f}); lattices in {lat_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
