#!/usr/bin/env python3
"""Fuzz every reader with mutated real inputs: count inputs tried, handled and crashed.

Readers: SLF, Kaldi text, Kaldi binary, k2 ``.pt``, ARPA, LM checkpoint, references. Each starts
from small real files (``tests/data``) and gets random mutations (bit flips, byte insertions and
deletions, duplicated or dropped chunks, truncation, and numbers replaced by huge, negative or
non-finite ones). An input is *handled* when the reader returns (lattice readers: lattices and/or
per-file failures) or raises ``ValueError`` naming the file; anything else (another exception
type, or more than ``--max-seconds``) is a *crash*. Every input runs in this process, so a
reader that allocated what a corrupt size field claims would show in the peak RSS.

Example::

    .venv/bin/python bench/fuzz_readers.py --inputs 2000 --json exp/bench-fuzz/fuzz.json
"""
import gzip
import json
import os
import random
import re
import resource
import shutil
import sys
import tempfile
import time
import warnings
from typing import Callable, Dict, List

import click

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = os.path.join(ROOT, "tests", "data", "lattices")
_NUMBER = re.compile(rb"-?\d+(\.\d+)?(e-?\d+)?")
_EVIL_NUMBERS = [b"2000000000", b"-1", b"99999999999999999999", b"nan", b"inf", b"-inf", b"0", b"1e308", b"3000000"]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """1 to 4 random edits of ``data``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        n = len(out)
        if op == 0 and n:  # flip bits
            for _ in range(rng.randint(1, 8)):
                out[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert random bytes
            at = rng.randint(0, n)
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 2 and n:  # delete a chunk
            at = rng.randrange(n)
            del out[at:at + rng.randint(1, 64)]
        elif op == 3 and n:  # duplicate a chunk
            at = rng.randrange(n)
            out[at:at] = out[at:at + rng.randint(1, 256)]
        elif op == 4 and n:  # truncate
            del out[rng.randrange(n):]
        elif op == 5:  # replace a number by a hostile one
            found = list(_NUMBER.finditer(bytes(out)))
            if found:
                m = rng.choice(found)
                out[m.start():m.end()] = rng.choice(_EVIL_NUMBERS)
        elif op == 6 and n:  # overwrite 4 bytes with a hostile int32
            at = rng.randrange(n)
            out[at:at + 4] = rng.choice([2**31 - 1, 2**30, 3_000_000, 0xFFFFFFFF]).to_bytes(4, "little")
    return bytes(out)


def _lattice_reader(fmt: str, words: bool) -> Callable[[bytes, str], object]:
    from lattices.reader import read_lattices

    def read(data: bytes, tmp: str) -> object:
        path = os.path.join(tmp, "input")
        with open(path, "wb") as f:
            f.write(data)
        if words:
            shutil.copy(os.path.join(DATA, "theanolm", "words.txt"), os.path.join(tmp, "words.txt"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch, failures = read_lattices([path], fmt=fmt)
        unnamed = [f.message for f in failures if path not in f.source]
        if unnamed:
            raise RuntimeError(f"a failure that does not name the file: {unnamed[0]}")
        return batch, failures

    return read


def _file_reader(load: Callable[[str], object]) -> Callable[[bytes, str], object]:
    def read(data: bytes, tmp: str) -> object:
        path = os.path.join(tmp, "input")
        with open(path, "wb") as f:
            f.write(data)
        return load(path)

    return read


def _seed_k2() -> List[bytes]:
    from lattices.k2_format import save_k2
    from lattices.reader import read_lattices

    batch, _ = read_lattices([os.path.join(DATA, "theanolm", "lattice.slf")])
    with tempfile.TemporaryDirectory() as d:
        save_k2(batch, os.path.join(d, "x.pt"))
        return [open(os.path.join(d, "x.pt"), "rb").read()]


def _seed_checkpoint() -> List[bytes]:
    import torch

    from models.checkpoint import save_checkpoint
    from models.config import LMConfig
    from models.lm import AFPLanguageModel
    from models.vocab import Vocabulary

    vocab = Vocabulary([("<eps>", 0), ("<s>", 1), ("</s>", 2), ("<unk>", 3), ("a", 4), ("b", 5)])
    torch.manual_seed(0)
    model = AFPLanguageModel(LMConfig(vocab_size=vocab.size, embed=4, hidden=4, cell="gru", iterations=2))
    with tempfile.TemporaryDirectory() as d:
        save_checkpoint(os.path.join(d, "m.pt"), model, vocab)
        return [open(os.path.join(d, "m.pt"), "rb").read()]


def _kaldi_binary_seed() -> bytes:
    data = open(os.path.join(DATA, "kaldi-binary", "lat.1"), "rb").read()
    second = data.index(b"CVTE", 10)  # the first two lattices: binary fuzzing stays fast
    third = data.index(b"CVTE", second + 10)
    return data[:third]


ARPA = (b"\\data\\\nngram 1=5\nngram 2=2\n\n\\1-grams:\n-0.9 <s> -0.4\n-0.7 </s>\n-2.0 <unk>\n-0.6 a -0.3\n"
        b"-0.8 b -0.2\n\n\\2-grams:\n-0.2 <s> a\n-0.3 a b\n\n\\end\\\n")


def readers() -> Dict[str, Dict[str, object]]:
    """name -> {"seeds": [bytes], "read": read(data, tmpdir)}."""
    from models.checkpoint import load_checkpoint
    from models.files import read_references
    from models.ngram import NgramLM

    slf = [open(os.path.join(DATA, "theanolm", "lattice.slf"), "rb").read(),  # words on links, lmscale header
           gzip.decompress(open(os.path.join(DATA, "ami-ihm", "AMI_ES2011a_H00_FEE041_0003427_0003714.lat.gz"), "rb").read())]
    kaldi_text = [open(os.path.join(DATA, "theanolm", "lattice.lat"), "rb").read()]
    return {
        "SLF": {"seeds": slf, "read": _lattice_reader("slf", False)},
        "Kaldi text": {"seeds": kaldi_text, "read": _lattice_reader("kaldi", True)},
        "Kaldi binary": {"seeds": [_kaldi_binary_seed()], "read": _lattice_reader("kaldi", False)},
        "auto-detected (any of the above)": {"seeds": slf + kaldi_text + [_kaldi_binary_seed()], "read": _lattice_reader("auto", False)},
        "k2 .pt": {"seeds": _seed_k2(), "read": _lattice_reader("k2", False)},
        "ARPA": {"seeds": [ARPA], "read": _file_reader(NgramLM.from_arpa)},
        "LM checkpoint": {"seeds": _seed_checkpoint(), "read": _file_reader(load_checkpoint)},
        "references": {"seeds": [b"utt1 hello world\nutt2 a b c\n"], "read": _file_reader(read_references)},
    }


def try_one(read: Callable[[bytes, str], object], data: bytes, max_seconds: float) -> Dict[str, object]:
    """Run one reader on ``data``: ``{"outcome": "handled" | "crash", "seconds", "error"}``."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        try:
            read(data, tmp)
            outcome, error = "handled", None
        except ValueError as e:
            outcome, error = ("handled", None) if "input" in str(e) else ("crash", f"ValueError without the file name: {e}")
        except Exception as e:  # noqa: BLE001 - any other exception is what we count
            outcome, error = "crash", f"{type(e).__name__}: {e}"
        seconds = time.perf_counter() - t0
    if seconds > max_seconds:
        outcome, error = "crash", f"took {seconds:.1f} s"
    return {"outcome": outcome, "seconds": seconds, "error": error}


@click.command()
@click.option("--inputs", default=2000, show_default=True, help="Mutated inputs per reader.")
@click.option("--seed", default=0, show_default=True, help="Random seed.")
@click.option("--max-seconds", default=10.0, show_default=True, help="A reader taking longer counts as a crash.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write the table as JSON.")
def main(inputs: int, seed: int, max_seconds: float, json_out) -> None:
    """Fuzz every reader; print a Markdown table (tried / handled / crashed, slowest input, peak RSS)."""
    rng = random.Random(seed)
    rows = []
    print("| reader | inputs tried | handled | crashed | slowest s |")
    print("|---|---|---|---|---|")
    for name, spec in readers().items():
        counts = {"handled": 0, "crash": 0}
        slowest, examples = 0.0, []
        for _ in range(inputs):
            res = try_one(spec["read"], mutate(rng.choice(spec["seeds"]), rng), max_seconds)
            counts[res["outcome"]] += 1
            slowest = max(slowest, res["seconds"])
            if res["error"] and len(examples) < 5:
                examples.append(res["error"][:300])
        row = {"reader": name, "tried": inputs, "handled": counts["handled"], "crashed": counts["crash"],
               "slowest_seconds": slowest, "crash_examples": examples}
        rows.append(row)
        print(f"| {name} | {inputs} | {counts['handled']} | {counts['crash']} | {slowest:.2f} |", flush=True)
        for e in examples:
            print(f"  crash: {e}", file=sys.stderr)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of the whole run: {peak:.0f} MiB")
    if json_out:
        os.makedirs(os.path.dirname(os.path.abspath(json_out)), exist_ok=True)
        with open(json_out, "w") as f:
            json.dump({"rows": rows, "peak_rss_mib": peak, "inputs": inputs, "seed": seed}, f, indent=2)


if __name__ == "__main__":
    main()
