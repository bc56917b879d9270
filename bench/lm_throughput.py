"""Training-step throughput of AFP-K vs exact (cuDNN) BPTT at equal batch size and model size.

Runs without k2 (only torch, click and models/), so it also runs on a GPU machine:
    PYTHONPATH=. python bench/lm_throughput.py --text ../shared/data/ptb/ptb.train.txt --device cuda \
        --layers 2 --hidden 650 --batch-size 64 --ks 2,4,6,8
Batches are real sentences of the text (length-bucketed as in training); each configuration
runs the same batches: warm-up steps, then the median over timed steps (CUDA synchronised).
"""
import statistics
import time
from typing import List

import click
import torch

from models.config import LMConfig
from models.distributed import resolve_device
from models.lm import AFPLanguageModel
from models.text import make_batches, read_sentences
from models.vocab import Vocabulary


def time_steps(model: AFPLanguageModel, batches, device: torch.device, mode: str, k: int, warmup: int) -> List[float]:
    """Seconds per optimizer step for each batch after ``warmup`` untimed steps."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for i, batch in enumerate(batches):
        inputs, targets, mask = batch.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        nll = model.token_nll(inputs, targets, mode, k)
        loss = nll.masked_fill(~mask, 0.0).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


@click.command(context_settings={"show_default": True})
@click.option("--text", required=True, type=click.Path(exists=True, dir_okay=False), help="Training text (sentences per line).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", help="Device.")
@click.option("--cell", type=click.Choice(["lstm", "gru", "elman"]), default="lstm", help="Cell.")
@click.option("--layers", type=int, default=2, help="Layers.")
@click.option("--hidden", type=int, default=650, help="Hidden = embedding size.")
@click.option("--vocab-size", type=int, default=10000, help="Vocabulary size (most frequent words).")
@click.option("--batch-size", type=int, default=64, help="Sentences per batch.")
@click.option("--ks", default="2,4,6,8", help="AFP iteration counts to compare with BPTT.")
@click.option("--steps", type=int, default=30, help="Timed steps per configuration.")
@click.option("--warmup", type=int, default=5, help="Untimed warm-up steps.")
def main(text, device, cell, layers, hidden, vocab_size, batch_size, ks, steps, warmup) -> None:
    """Print a markdown table: mode, K, median ms/step, tokens/s, speed relative to BPTT."""
    dev = resolve_device(device)
    sentences = read_sentences(text, max_len=100)
    vocab = Vocabulary.from_sentences(sentences, vocab_size)
    batches = make_batches([vocab.encode(s) for s in sentences], batch_size, vocab.bos_id, vocab.eos_id, shuffle=True, seed=0)
    batches = batches[: warmup + steps]
    tokens = statistics.mean(b.num_tokens for b in batches[warmup:])
    torch.manual_seed(0)
    model = AFPLanguageModel(LMConfig(vocab_size=vocab.size, embed=hidden, hidden=hidden, layers=layers, cell=cell, tie=True))
    model.set_nonpredictable(vocab.nonpredictable_ids())
    model.to(dev).train()
    rows, base = [], None
    for mode, k in [("exact", 1)] + [("afp", int(k)) for k in ks.split(",")]:
        med = statistics.median(time_steps(model, batches, dev, mode, k, warmup))
        base = base or med
        rows.append(f"| {'bptt (cuDNN)' if mode == 'exact' and dev.type == 'cuda' else 'bptt' if mode == 'exact' else 'afp'} | "
                    f"{k if mode == 'afp' else '∞'} | {med * 1e3:.1f} | {tokens / med:.0f} | {base / med:.2f} |")
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    click.echo(f"{name}; torch {torch.__version__}; {layers}x{hidden} {cell}, vocab {vocab.size}, batch {batch_size}, "
               f"{tokens:.0f} tokens/batch on average")
    click.echo("| mode | K | ms/step (median) | tokens/s | speed vs BPTT |\n|---|---|---|---|---|")
    click.echo("\n".join(rows))


if __name__ == "__main__":
    main()
