"""``afp-rescore``: rescore lattices with an AFP LM and write 1-best, n-best, lattices and WER."""
import os
import sys
from typing import Optional

import click

from lattices.cli.common import LATTICE_PATH, frame_options, penalty_options, plain_warnings
from lattices.reader import DEFAULT_BATCH_ARCS, FORMATS
from lattices.normalize import NormalizationRules
from lattices.writer import WRITE_FORMATS

from .outputs import failure_line
from .pipeline import DECODES, METHODS, RescoreOptions
from .run import RunOptions, parse_shard, run_rescoring

INPUT = click.Path(exists=True, dir_okay=False)


def comma_floats(ctx, param, value: Optional[str]):
    """Click callback: ``"5,10,15"`` -> ``(5.0, 10.0, 15.0)`` (empty -> ``()``)."""
    if not value:
        return ()
    try:
        return tuple(float(x) for x in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from None


def set_threads(ctx, param, value: Optional[int]) -> Optional[int]:
    """Click callback: ``--threads N`` sets torch's CPU threads (``torch.set_num_threads``) before
    any work; None leaves torch's default (one per core)."""
    if value:
        import torch

        torch.set_num_threads(value)
    return value


JOB_OPTIONS = (
    click.argument("lattices", nargs=-1, required=True, type=LATTICE_PATH),
    click.option("--lm", required=True, type=INPUT, help="The new LM: an afp-train-lm checkpoint (model.pt) or an ARPA n-gram (.arpa[.gz])."),
    click.option("--old-lm", type=INPUT, default=None,
                 help="ARPA n-gram (or checkpoint) whose scores replace the lattices' LM scores before interpolation."),
    click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", help="Lattice format (auto: from the content)."),
    click.option("--words", type=INPUT, help="words.txt of Kaldi lattices [default: one next to the archive, else the ids are the words]."),
    penalty_options,
    click.option("--iterations", "-K", type=click.IntRange(min=1), default=None,
                 help="Expansion order K [default: the model's iterations; needed for a BPTT model]."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", help="auto = CUDA when available."),
    click.option("--max-arcs", type=click.IntRange(min=1), default=100_000,
                 help="Per utterance, at most this many expanded arcs; larger lattices are beam-pruned first (reported)."),
    click.option("--first-pass-beam", type=click.FloatRange(min=0), default=None,
                 help="With --old-lm: first expand for and score with the old LM alone (Kaldi's lmrescore), prune that "
                      "lattice at this beam (lattice-prune), then expand for the new LM [default: one expansion for both]. "
                      "Without --old-lm: prune the input lattices at this beam before rescoring [default: no pruning]."),
    click.option("--first-pass-max-arcs", type=click.IntRange(min=1), default=None,
                 help="--max-arcs of the first-pass expansion [default: --max-arcs]."),
    click.option("--lookahead/--no-lookahead", default=True,
                 help="Prune lattices too large for --max-arcs by scores with the LMs' one-word-context look-ahead in them, "
                      "not by the lattice's scores alone (which for pocketsphinx lattices have no LM)."),
    click.option("--batch-arcs", type=click.IntRange(min=1), default=DEFAULT_BATCH_ARCS,
                 help="Lattices are read and rescored in batches of about this many input arcs (bounds memory)."),
    click.option("--normalize/--no-normalize", default=True,
                 help="--no-normalize skips the softmax normaliser; only for an LM trained with afp-train-lm --self-norm."),
    click.option("--unk", default=None, help="Unknown-word symbol of ARPA LMs [default: <unk> in any case, e.g. <UNK>]."),
    click.option("--threads", type=click.IntRange(min=1), default=None, expose_value=False, callback=set_threads,
                 help="CPU threads of the tensor work [default: torch's, one per core]. Several jobs on one machine "
                      "should share its cores (make rescore gives each cores/JOBS): too many threads slow every job."),
)


def job_options(func):
    """Decorator: the inputs, LMs, expansion, pruning and device options that ``afp-rescore`` and
    ``afp-tune`` share (:data:`JOB_OPTIONS`, in help order)."""
    for option in reversed(JOB_OPTIONS):
        func = option(func)
    return func


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@job_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@frame_options
@click.option("--am-scale", type=float, default=None, help="Acoustic scale [default: lattice header, else 1].")
@click.option("--lm-scale", type=float, default=None, help="LM scale [default: lattice header, else 1].")
@click.option("--word-penalty", type=float, default=None, help="Per-word score added [default: lattice header, else 0].")
@click.option("--scales", "scales_file", type=INPUT, default=None,
              help="scales.json from afp-tune: its am/lm scale, word penalty and interpolation weight (the options may not be given as well).")
@click.option("--interpolate", type=click.FloatRange(0, 1), default=None,
              help="w in lm = (1-w)*old_lm + w*afp_lm; 1 replaces the lattice's LM scores [default: 1].")
@click.option("--nbest", type=click.IntRange(min=1), default=10, help="Hypotheses written per utterance (nbest.jsonl).")
@click.option("--ref", type=INPUT, help="References (Kaldi text or lhotse supervisions): writes wer.txt.")
@click.option("--lm-scales", callback=comma_floats, default=None, help="Comma-separated LM scales to sweep: writes wer-summary.txt (with --ref).")
@click.option("--method", type=click.Choice(METHODS), default="afp",
              help="afp: exact K-history expansion + one parallel pass; nbest-exact: baseline rescoring the exact N-best with the full-history RNN.")
@click.option("--decode", type=click.Choice(DECODES), default="viterbi",
              help="The 1-best in OUT/text and OUT/ctm: viterbi (best path) or mbr (lattice minimum Bayes risk, "
                   "Kaldi's lattice-mbr-decode algorithm, on the rescored lattice).")
@click.option("--ctm/--no-ctm", default=True,
              help="Write OUT/ctm (word times and confidences of the 1-best) when the lattices have times; "
                   "--no-ctm saves its forward-backward over the rescored lattices.")
@click.option("--max-batch", type=click.IntRange(min=1), default=4096, help="Distinct histories per LM chunk (bounds memory).")
@click.option("--shard", default="0/1", help="Do shard I of N (0-based): files I::N, or, with fewer files, the utterances whose id hashes to I (CRC-32 mod N; only those are parsed).")
@click.option("--write-lattices", is_flag=True, help="Also write the rescored lattices to OUT/lattices*.")
@click.option("--lattice-format", type=click.Choice(WRITE_FORMATS), default=None,
              help="Format of --write-lattices (kaldi: binary archive, kaldi-text: ark,t) [default: the input's].")
@click.option("--force", is_flag=True, help="Redo a job whose OUT/metrics.json already exists.")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
def rescore_command(lattices, lm, old_lm, out, fmt, words, frame_shift, frame_subsampling_factor, rules, am_scale, lm_scale, word_penalty,
                    scales_file, interpolate, nbest, ref, lm_scales,
                    method, decode, ctm, iterations, device, max_arcs, first_pass_beam, first_pass_max_arcs, lookahead, max_batch, batch_arcs, normalize, unk, shard, write_lattices, lattice_format, force,
                    progress) -> None:
    """Rescore LATTICES (files, directories, @lists or Kaldi rspecifiers of k2, HTK SLF or Kaldi
    lattices) with an AFP LM (or an ARPA n-gram).

    Writes OUT/text (1-best), OUT/nbest.jsonl, OUT/hyps.supervisions.jsonl.gz, OUT/failures.txt,
    OUT/metrics.json (last: a finished job is skipped on rerun) and, with --ref, OUT/wer.txt.
    Exits 1 if any file or utterance failed (the others are still rescored).
    """
    plain_warnings()
    try:
        am_scale, lm_scale, word_penalty, interpolate = _with_scales_file(scales_file, am_scale, lm_scale, word_penalty, interpolate, rules)
        opts = RunOptions(
            lattices=list(lattices), lm=lm, old_lm=old_lm, out=out, fmt=fmt, words=words,
            frame_seconds=frame_shift * frame_subsampling_factor, am_scale=am_scale, lm_scale=lm_scale,
            word_penalty=word_penalty, shard=parse_shard(shard), ref=ref, write_lattices=write_lattices,
            lattice_format=lattice_format, device=device, force=force, batch_arcs=batch_arcs, normalize=normalize, unk=unk,
            rules=rules, rescore=RescoreOptions(method=method, decode=decode, first_pass_beam=first_pass_beam,
                                   first_pass_max_arcs=first_pass_max_arcs, interpolate=interpolate, nbest=nbest, order=iterations, max_arcs=max_arcs,
                                   max_batch=max_batch, lm_scales=lm_scales, progress=progress, lookahead=lookahead, ctm=ctm))
        metrics = run_rescoring(opts)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    if metrics.get("skipped"):
        click.echo(f"{out}: already done (metrics.json exists; --force to redo)", err=True)
    wer = f", WER {100 * metrics['wer']:.2f}%" if metrics.get("wer") is not None else ""
    click.echo(f"{out}: {metrics['utterances_done']} rescored, {metrics['utterances_failed']} failed, "
               f"{metrics.get('arcs_after_expansion', 0)} arcs, {metrics['arcs_per_s']:.0f} arcs/s on {metrics['device']}{wer}", err=True)
    if metrics["utterances_failed"]:
        with open(os.path.join(out, "failures.txt"), encoding="utf-8") as f:
            for line in f:
                source, _, message = line.rstrip("\n").partition("\t")
                click.echo(failure_line(source, message), err=True)
        click.echo(f"{metrics['utterances_failed']} failure(s), listed in {out}/failures.txt", err=True)
        sys.exit(1)


def _with_scales_file(path: Optional[str], am_scale, lm_scale, word_penalty, interpolate, rules: NormalizationRules):
    """The scales of ``--scales FILE`` (afp-tune's scales.json), or the options as given. The
    silence/filler/``!NULL`` penalties must be those the file was tuned with."""
    if path is None:
        return am_scale, lm_scale, word_penalty, 1.0 if interpolate is None else interpolate
    given = [n for n, v in (("--am-scale", am_scale), ("--lm-scale", lm_scale), ("--word-penalty", word_penalty),
                            ("--interpolate", interpolate)) if v is not None]
    if given:
        raise ValueError(f"--scales {path} sets the scales; do not also give {', '.join(given)}")
    from .tune import penalties_of, read_scales

    s, tuned_with = read_scales(path)
    if tuned_with != penalties_of(rules):
        raise ValueError(f"--scales {path} was tuned with penalties {tuned_with}; give the same "
                         f"--silence-penalty/--filler-penalty/--null-penalty (given: {penalties_of(rules)})")
    return s.am_scale, s.lm_scale, s.word_penalty, s.interpolate


def main() -> None:
    rescore_command(prog_name="afp-rescore")


if __name__ == "__main__":
    sys.exit(main())
