"""Time the rescoring LM pass alone, on any device, without k2 at timing time.

The GPU machine has no k2, so the work is split in two:

1. ``dump`` (needs k2): read and expand lattices exactly as ``afp-rescore`` does and save the
   distinct histories, the pair -> history map and the words to a ``.pt`` file::

       python bench/lm_pass.py dump --lm model.pt --out pairs.pt [--max-arcs N] LATTICES...

2. ``time`` (torch only): load the dump and a checkpoint, time ``score_unique_histories`` for
   each way of computing the states in the same run (``jacobi``: K Jacobi iterations per history,
   the code before the prefix tree; ``tree``: one cell step per distinct prefix; optionally
   ``--no-normalize`` for a self-normalised model, and ``--unblocked`` for the normaliser over a
   whole chunk at once and 65,536-pair gathers, as before the cache blocking), median of ``--repeat`` runs after a warm-up,
   CUDA synchronised, and report expanded arcs/s and the score difference between them::

       PYTHONPATH=. python bench/lm_pass.py time --lm model.pt --pairs pairs.pt --device cuda
"""
import json
import statistics
import time
from dataclasses import fields

import click
import torch

from models.checkpoint import load_checkpoint
from models.distributed import resolve_device
from models.scoring import score_unique_histories


@click.group()
def main() -> None:
    """Dump expanded-lattice histories (k2) or time the LM pass over them (no k2)."""


@main.command()
@click.argument("lattices", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--lm", required=True, type=click.Path(exists=True, dir_okay=False), help="AFP checkpoint (for K and the vocabulary).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Dump file (.pt).")
@click.option("--max-arcs", default=200000, show_default=True, help="As afp-rescore --max-arcs.")
def dump(lattices, lm: str, out: str, max_arcs: int) -> None:
    """Expand LATTICES and save the LM pass's inputs."""
    from lattices.reader import read_lattices
    from lattices.validate import validate_batch
    from rescore.pipeline import expand_and_score
    from rescore.scorers import load_scorer

    scorer = load_scorer(lm)
    batch, _ = read_lattices(list(lattices))
    batch, _ = validate_batch(batch)
    saved = {}

    def capture(histories, lengths, inverse, words, *args):  # record what the pipeline would score
        saved.update(histories=histories, lengths=lengths, inverse=inverse, words=words)
        return torch.zeros(words.shape[0])

    scorer.score = capture  # type: ignore[assignment]
    exp = expand_and_score(batch.fsas, batch.symbols, [scorer], scorer.context, max_arcs).expansion
    # the expansion's input as plain tensors (rescore.arcs.Arcs) and history tokens, for `time --expand`
    from rescore.arc_scores import history_tokens
    from rescore.arcs import Arcs

    history = history_tokens(batch.symbols, [scorer])
    tokens = history.of_labels(batch.fsas.labels)
    arcs = Arcs.from_fsas(batch.fsas)
    plain = {f.name: getattr(arcs, f.name) for f in fields(Arcs)}  # its fields (not a cached levels)
    small = {k: v.to(torch.int32) for k, v in saved.items()}  # int32 on disk (fits a 64 MiB carry); int64 on load
    torch.save({**small, "expanded_arcs": int(exp.fsas.num_arcs), "lattices": len(exp.kept),
                "arcs": {k: v if v.is_floating_point() else v.to(torch.int32) for k, v in plain.items()},
                "tokens": tokens.to(torch.int32), "order": scorer.context,
                "bos": history.bos, "max_arcs": max_arcs}, out)
    click.echo(f"{out}: {len(exp.kept)} lattices, {exp.fsas.num_arcs} expanded arcs, {saved['histories'].shape[0]} distinct histories")


@main.command("time")
@click.option("--lm", required=True, type=click.Path(exists=True, dir_okay=False), help="AFP checkpoint.")
@click.option("--pairs", required=True, type=click.Path(exists=True, dir_okay=False), help="File written by `dump`.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True, help="Device.")
@click.option("--max-batch", default=4096, show_default=True, help="Distinct histories per LM chunk.")
@click.option("--repeat", default=3, show_default=True, help="Timed runs (median reported).")
@click.option("--states", "variants", default="jacobi,tree", show_default=True,
              help="Comma-separated state computations to time in this run: jacobi (K iterations per history), tree (prefix tree).")
@click.option("--expand", "time_expand", is_flag=True,
              help="Also time the expansion core (rescore.grow) on the dumped input lattices (first, unpruned pass with --max-arcs).")
@click.option("--no-normalize", "also_raw", is_flag=True,
              help="Also time the prefix tree without the softmax normaliser (a self-normalised LM; its offset from the checkpoint).")
@click.option("--unblocked", "also_unblocked", is_flag=True,
              help="Also time each prefix-tree variant as before the cache blocking: the normaliser in one block per chunk, 65,536-pair gathers.")
@click.option("--per-step-inputs", "also_per_step", is_flag=True,
              help="Also time each prefix-tree variant without the word input table (first-layer input projections computed at each step, as before).")
def time_pass(lm: str, pairs: str, device: str, max_batch: int, repeat: int, variants: str, time_expand: bool,
              also_raw: bool, also_unblocked: bool, also_per_step: bool) -> None:
    """Print one JSON line per variant: seconds, expanded arcs/s, histories/s, cell steps per
    history, and the largest score difference from the first variant. The prefix-tree variants
    use the model's word input table (built once, as ``afp-rescore`` does; its time is printed)."""
    from models.checkpoint import self_norm_offset
    from models.prefix_tree import word_input_table

    dev = resolve_device(device)
    model, _, extra = load_checkpoint(lm, str(dev))
    d = torch.load(pairs)
    args = tuple(d[k].long() for k in ("histories", "lengths", "inverse", "words"))
    t0 = time.perf_counter()
    table = word_input_table(model)
    click.echo(json.dumps({"variant": "word input table", "device": str(dev), "seconds": time.perf_counter() - t0,
                           "shape": list(table.shape) if table is not None else None}))
    runs = [(v, {"states": v, **({"input_table": table} if v == "tree" else {})}) for v in variants.split(",")]
    if also_raw:
        runs.append(("tree-no-normalize", {"states": "tree", "normalize": False, "input_table": table,
                                           "log_norm_offset": self_norm_offset(lm, model, extra)}))
    tree_runs = [(name, kw) for name, kw in runs if kw["states"] == "tree"]
    if also_unblocked:  # each tree variant again, as before the cache blocking
        runs += [(f"{name}-unblocked", {**kw, "norm_rows": max_batch, "gather_batch": 1 << 16}) for name, kw in tree_runs]
    if also_per_step:  # and without the input table
        runs += [(f"{name}-per-step-inputs", {**kw, "input_table": None}) for name, kw in tree_runs]
    if time_expand:
        from rescore.arcs import Arcs
        from rescore.grow import grow

        arcs = Arcs(**{k: v if v.is_floating_point() else v.long() for k, v in d["arcs"].items()}).to(dev)
        tokens = d["tokens"].long().to(dev)

        def expand_once() -> float:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            g = grow(arcs, d["order"], d["bos"], tokens, d["max_arcs"])
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            expand_once.arcs = int(g.arc_src.numel())  # type: ignore[attr-defined]
            return time.perf_counter() - t0

        expand_once()
        sec = statistics.median(expand_once() for _ in range(repeat))
        click.echo(json.dumps({"variant": "expand (rescore.grow, first pass)", "device": str(dev), "seconds": sec,
                               "input_arcs": int(arcs.src.numel()), "grown_arcs": expand_once.arcs,  # type: ignore[attr-defined]
                               "grown_arcs_per_s": expand_once.arcs / sec}))  # type: ignore[attr-defined]
    reference = None
    for name, kwargs in runs:
        stats: dict = {}

        def once() -> float:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            out = score_unique_histories(model, *args, max_batch=max_batch, stats=stats, **kwargs)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            assert torch.isfinite(out).all()
            once.out = out  # type: ignore[attr-defined]
            return time.perf_counter() - t0

        once()  # warm-up
        sec = statistics.median(once() for _ in range(repeat))
        out = once.out.double().cpu()  # type: ignore[attr-defined]
        reference = out if reference is None else reference
        dev_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
        click.echo(json.dumps({"variant": name, "device": dev_name, "torch": torch.__version__, "seconds": sec,
                               "lattices": d["lattices"], "expanded_arcs": d["expanded_arcs"],
                               "distinct_histories": int(d["histories"].shape[0]),
                               "arcs_per_s": d["expanded_arcs"] / sec, "histories_per_s": d["histories"].shape[0] / sec,
                               "cell_steps_per_history": stats["cell_steps"] / max(stats["histories"], 1),
                               "max_abs_diff_vs_first": float((out - reference).abs().max()),
                               "max_batch": max_batch, "config": model.config.to_dict()}))


if __name__ == "__main__":
    main()
