"""Training an AFP (or BPTT) language model: data, loop, validation, checkpoints, metrics."""
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from tqdm import tqdm

from .files import atomic_open
from .checkpoint import load_checkpoint, load_payload, save_checkpoint
from .config import LMConfig
from .distributed import Runtime, all_reduce_sum, init_runtime, shutdown
from .evaluate import evaluate
from .lm import AFPLanguageModel
from .stability import project_recurrent_weights
from .text import Batch, make_batches, read_corpus, read_sentences
from .vocab import Vocabulary

log = logging.getLogger("afp-train-lm")
TRAIN_MODES = {"afp": "afp", "bptt": "exact"}


@dataclass
class TrainOptions:
    """Everything ``afp-train-lm`` accepts (see its ``--help`` for each field)."""

    train: List[str]
    valid: str
    out: str
    test: Optional[str] = None
    cell: str = "lstm"
    layers: int = 1
    hidden: int = 256
    embed: int = 256
    iterations: int = 4
    mode: str = "afp"
    epochs: int = 10
    max_steps: Optional[int] = None
    checkpoint_every: Optional[int] = None
    batch_size: int = 32
    lr: float = 2e-3
    lr_decay: float = 0.5
    patience: int = 2
    clip: float = 1.0
    dropout: float = 0.0
    tie: bool = False
    vocab: Optional[str] = None
    max_vocab: Optional[int] = None
    max_len: int = 100
    max_recurrent_norm: Optional[float] = None
    self_norm: float = 0.0
    device: str = "auto"
    seed: int = 1
    resume: bool = False
    dry_run: bool = False
    progress: bool = True
    extra: Dict[str, Any] = field(default_factory=dict)


def _setup_logging(out: str, runtime: Runtime, dry_run: bool) -> None:
    log.setLevel(logging.INFO if runtime.is_main else logging.WARNING)
    log.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    handlers: List[logging.Handler] = [logging.StreamHandler()]
    if runtime.is_main and not dry_run:
        os.makedirs(out, exist_ok=True)
        handlers.append(logging.FileHandler(os.path.join(out, "train.log")))
    for h in handlers:
        h.setFormatter(fmt)
        log.addHandler(h)


def _build_vocab(opts: TrainOptions, train: List[List[str]], resumed: Optional[Vocabulary]) -> Vocabulary:
    given = Vocabulary.from_file(opts.vocab) if opts.vocab else None
    if resumed is not None:
        if given is not None and given != resumed:
            raise ValueError(f"--resume: vocabulary {opts.vocab} differs from the one in {opts.out}/last.pt")
        return resumed
    return given or Vocabulary.from_sentences(train, opts.max_vocab)


def _build_config(opts: TrainOptions, vocab: Vocabulary) -> LMConfig:
    if opts.mode not in TRAIN_MODES:
        raise ValueError(f"--mode must be afp or bptt, got {opts.mode!r}")
    return LMConfig(
        vocab_size=vocab.size, embed=opts.embed, hidden=opts.hidden, layers=opts.layers, cell=opts.cell,
        dropout=opts.dropout, tie=opts.tie, mode=TRAIN_MODES[opts.mode], iterations=opts.iterations,
        max_recurrent_norm=opts.max_recurrent_norm, self_norm=opts.self_norm,
    )


def _encode(sentences: List[List[str]], vocab: Vocabulary) -> Tuple[List[List[int]], int]:
    """Ids of every sentence and the number of out-of-vocabulary tokens."""
    ids = [vocab.encode(s) for s in sentences]
    oov = sum(1 for s in sentences for w in s if w not in vocab)
    return ids, oov


def _load_resume(opts: TrainOptions) -> Optional[Dict[str, Any]]:
    if not opts.resume:
        return None
    path = os.path.join(opts.out, "last.pt")
    if not os.path.isfile(path):
        raise ValueError(f"--resume: no resumable checkpoint {path}")
    return load_payload(path)


class _TokenNLL(torch.nn.Module):
    """``(inputs, targets) -> [B, T]`` token NLL as a module's forward, so DDP can wrap it; for a
    self-normalised model ``(nll, log_z)``, both ``[B, T]``."""

    def __init__(self, model: AFPLanguageModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor):
        if self.model.config.self_norm > 0:
            return self.model.token_nll(inputs, targets, return_log_norm=True)
        return self.model.token_nll(inputs, targets)


class _Trainer:
    """The training loop's state; one instance per ``train_lm`` call."""

    def __init__(self, opts: TrainOptions, runtime: Runtime) -> None:
        self.opts, self.rt = opts, runtime
        resume = _load_resume(opts)
        train_text = read_corpus(opts.train, opts.max_len)
        resumed_vocab = Vocabulary.from_state(resume["vocab"]) if resume else None
        self.vocab = _build_vocab(opts, train_text, resumed_vocab)
        self.config = _build_config(opts, self.vocab)
        if resume and LMConfig.from_dict(dict(resume["config"])) != self.config:
            old = LMConfig.from_dict(dict(resume["config"])).to_dict()
            diff = {k: (old[k], v) for k, v in self.config.to_dict().items() if old[k] != v}
            raise ValueError(f"--resume: options differ from {opts.out}/last.pt (old, new): {diff}")
        self.train_ids, self.train_oov = _encode(train_text, self.vocab)
        valid_ids, self.valid_oov = _encode(read_sentences(opts.valid), self.vocab)
        self.valid_batches = make_batches(valid_ids, opts.batch_size, self.vocab.bos_id, self.vocab.eos_id)
        self.test_batches = None
        if opts.test:
            test_ids, _ = _encode(read_sentences(opts.test), self.vocab)
            self.test_batches = make_batches(test_ids, opts.batch_size, self.vocab.bos_id, self.vocab.eos_id)

        torch.manual_seed(opts.seed)  # same initial weights on every rank
        self.model = AFPLanguageModel(self.config)
        self.model.set_nonpredictable(self.vocab.nonpredictable_ids())
        self.model.to(runtime.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=opts.lr)
        self.state = {"epoch": 0, "step": 0, "best_valid_ppl": math.inf, "best_epoch": 0, "best_step": 0, "bad_epochs": 0,
                      "lr": opts.lr, "train_tokens": 0.0, "train_seconds": 0.0, "history": [],
                      "batch": 0}  # batches of the current epoch already trained (a mid-epoch checkpoint)
        if resume:
            self.model.load_state_dict(resume["state_dict"])
            self.optimizer.load_state_dict(resume["extra"]["optimizer"])
            self.state.update(resume["extra"]["state"])
            torch.set_rng_state(resume["extra"]["rng"])
            log.info("resumed from %s/last.pt at epoch %d, step %d", opts.out, self.state["epoch"], self.state["step"])
        self.loss_fn: torch.nn.Module = _TokenNLL(self.model)
        if runtime.distributed:
            ids = [runtime.device.index] if runtime.device.type == "cuda" else None
            self.loss_fn = torch.nn.parallel.DistributedDataParallel(self.loss_fn, device_ids=ids)

    # --- pieces -----------------------------------------------------------------------------------
    def summary(self) -> Dict[str, Any]:
        n_params = sum(p.numel() for p in self.model.parameters())
        n_tokens = sum(len(s) + 1 for s in self.train_ids)
        return {"config": self.config.to_dict(), "parameters": n_params, "vocab_entries": len(self.vocab),
                "train_sentences": len(self.train_ids), "train_tokens": n_tokens, "train_oov": self.train_oov,
                "valid_oov": self.valid_oov, "device": str(self.rt.device), "world_size": self.rt.world_size}

    def epoch_batches(self, epoch: int) -> List[Batch]:
        batches = make_batches(self.train_ids, self.opts.batch_size, self.vocab.bos_id, self.vocab.eos_id,
                               shuffle=True, seed=self.opts.seed + epoch)
        usable = len(batches) - len(batches) % self.rt.world_size  # equal step counts on every rank
        return batches[self.rt.rank : usable : self.rt.world_size]

    def step(self, batch: Batch) -> Tuple[float, int]:
        inputs, targets, mask = batch.to(self.rt.device)
        out = self.loss_fn(inputs, targets)
        tokens = int(mask.sum())
        nll, log_z = out if isinstance(out, tuple) else (out, None)
        loss = nll.masked_fill(~mask, 0.0).sum() / tokens
        if log_z is not None:  # variance regulariser: drive log Z towards 0 (self-normalisation)
            loss = loss + self.config.self_norm * log_z.pow(2).masked_fill(~mask, 0.0).sum() / tokens
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss is {float(loss)} at epoch {self.state['epoch'] + 1}, step {self.state['step'] + 1} "
                f"(lr {self.state['lr']:g}); try a lower --lr, --clip, or --max-recurrent-norm")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.opts.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.opts.clip)
        self.optimizer.step()
        if self.config.max_recurrent_norm is not None:
            project_recurrent_weights(self.model, self.config.max_recurrent_norm)
        self.state["step"] += 1
        return float(loss), tokens

    def save_last(self) -> None:
        if self.rt.is_main:
            extra = {"optimizer": self.optimizer.state_dict(), "state": dict(self.state), "rng": torch.get_rng_state()}
            save_checkpoint(os.path.join(self.opts.out, "last.pt"), self.model, self.vocab, extra)

    def out_of_steps(self) -> bool:
        return self.opts.max_steps is not None and self.state["step"] >= self.opts.max_steps

    def run_epoch(self) -> bool:
        """Train on the rest of the current epoch's batches (from ``state["batch"]`` on, so a
        resumed run continues where its last checkpoint was). Every ``checkpoint_every`` steps,
        validate and checkpoint without ending the epoch.

        Returns:
            True if the epoch was completed, False if ``max_steps`` stopped it part-way.
        """
        epoch = self.state["epoch"]
        batches = self.epoch_batches(epoch)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{self.opts.epochs}", unit="batch", dynamic_ncols=True,
                   disable=not (self.rt.is_main and self.opts.progress), mininterval=1.0, initial=self.state["batch"])
        self.model.train()
        t_epoch = t0 = time.perf_counter()
        shown = pending = 0  # tokens this run of the epoch (for the bar); tokens not yet counted in state
        for batch in batches[self.state["batch"] :]:
            loss, n = self.step(batch)
            bar.update()
            self.state["batch"] += 1
            shown, pending = shown + n, pending + n
            bar.set_postfix(loss=f"{loss:.3f}", ppl=f"{math.exp(min(loss, 50)):.1f}",
                            tok_s=f"{shown * self.rt.world_size / (time.perf_counter() - t_epoch):.0f}", refresh=False)
            if self.out_of_steps():
                break
            # (not after the epoch's last batch: the end of the epoch validates and checkpoints anyway)
            if (self.opts.checkpoint_every and self.state["step"] % self.opts.checkpoint_every == 0
                    and self.state["batch"] < len(batches)):
                self._count_time(t0, pending)
                self.validate_and_checkpoint(end_of_epoch=False)
                self.model.train()
                t0, pending = time.perf_counter(), 0
        bar.close()
        self._count_time(t0, pending)
        done = self.state["batch"] >= len(batches)
        if done:
            self.state["epoch"], self.state["batch"] = epoch + 1, 0
        return done

    def _count_time(self, t0: float, tokens: int) -> None:
        if self.rt.device.type == "cuda":
            torch.cuda.synchronize(self.rt.device)
        self.state["train_seconds"] += time.perf_counter() - t0
        self.state["train_tokens"] += all_reduce_sum(tokens, self.rt)

    def validate_and_checkpoint(self, end_of_epoch: bool = True) -> None:
        """Validate; save ``model.pt`` if it improved; save ``last.pt``. Only at the end of an
        epoch does a lack of gain count towards ``patience`` and decay the learning rate."""
        result = evaluate(self.model, self.valid_batches, self.rt.device, diagnostics=self.config.mode == "afp")
        where = f"epoch {self.state['epoch'] + (0 if end_of_epoch else 1)}" + ("" if end_of_epoch else f" (batch {self.state['batch']})")
        if not math.isfinite(result.ppl):
            raise ValueError(f"{self.opts.valid}: validation perplexity is {result.ppl} at {where}")
        entry = {"epoch": self.state["epoch"], "batch": self.state["batch"], "step": self.state["step"],
                 "lr": self.state["lr"], **result.to_dict("valid")}
        self.state["history"].append(entry)
        improved = result.ppl < self.state["best_valid_ppl"]
        if improved:
            self.state.update(best_valid_ppl=result.ppl, best_epoch=self.state["epoch"], best_step=self.state["step"])
            if end_of_epoch:
                self.state["bad_epochs"] = 0
            if self.rt.is_main:
                save_checkpoint(os.path.join(self.opts.out, "model.pt"), self.model, self.vocab,
                                {"log_norm": result.log_norm_stats()})
        elif end_of_epoch:
            self.state["bad_epochs"] += 1
            self.state["lr"] *= self.opts.lr_decay
            for group in self.optimizer.param_groups:
                group["lr"] = self.state["lr"]
        tokps = self.state["train_tokens"] / max(self.state["train_seconds"], 1e-9)
        log.info("%s step %d: valid ppl %.2f%s (best %.2f @ step %d), lr %.3g, %.0f train tokens/s%s",
                 where, self.state["step"], result.ppl, "" if improved else " (no gain)",
                 self.state["best_valid_ppl"], self.state["best_step"], self.state["lr"], tokps,
                 "" if result.residual is None else f", fixed-point residual {result.residual:.2e}, gap to exact {result.gap_to_exact:.2e}")
        self.save_last()

    def finished(self) -> bool:
        return (self.state["epoch"] >= self.opts.epochs or self.out_of_steps()
                or self.state["bad_epochs"] >= self.opts.patience)

    def final_metrics(self) -> Dict[str, Any]:
        best, _, _ = load_checkpoint(os.path.join(self.opts.out, "model.pt"), str(self.rt.device))
        valid = evaluate(best, self.valid_batches, self.rt.device, diagnostics=self.config.mode == "afp")
        metrics: Dict[str, Any] = {
            "mode": self.opts.mode, "iterations": self.config.iterations, "epochs": self.state["epoch"],
            "steps": self.state["step"], "best_epoch": self.state["best_epoch"], "best_step": self.state["best_step"],
            "train_tokens_per_s": self.state["train_tokens"] / max(self.state["train_seconds"], 1e-9),
            "train_seconds": self.state["train_seconds"], **valid.to_dict("valid"),
            "test_ppl": None, **self.summary(), "history": self.state["history"], **self.opts.extra,
        }
        if self.test_batches is not None:
            test = evaluate(best, self.test_batches, self.rt.device, diagnostics=self.config.mode == "afp")
            metrics.update(test.to_dict("test"))
        return metrics


def train_lm(opts: TrainOptions) -> Dict[str, Any]:
    """Train an LM as ``opts`` says and write ``model.pt``, ``last.pt``, ``train.log``, ``metrics.json``.

    ``model.pt`` holds the best model on the validation set; ``last.pt`` adds the optimizer and
    loop state so ``resume=True`` continues where training stopped. Under ``torchrun`` every
    process trains on its shard of the batches (DDP) and only rank 0 writes files.

    Returns:
        The metrics written to ``metrics.json`` (with ``dry_run``: a summary, and nothing is
        written; on ranks other than 0 under torchrun: an empty dict).

    Raises:
        ValueError: bad input (empty/missing files, vocabulary or option mismatch on resume,
            non-finite loss), naming the offending file or value.
    """
    runtime = init_runtime(opts.device)
    ok = False
    try:
        _setup_logging(opts.out, runtime, opts.dry_run)
        random.seed(opts.seed)
        trainer = _Trainer(opts, runtime)
        summary = trainer.summary()
        log.info("model and data: %s", json.dumps(summary))
        if opts.dry_run:  # one forward/backward to prove the set-up works, then stop
            trainer.step(trainer.epoch_batches(0)[0])
            ok = True
            return summary
        while not trainer.finished():
            trainer.validate_and_checkpoint(end_of_epoch=trainer.run_epoch())
        metrics: Dict[str, Any] = {}
        if runtime.is_main:  # rank 0 alone evaluates the best model and writes metrics
            metrics = trainer.final_metrics()
            with atomic_open(os.path.join(opts.out, "metrics.json")) as f:
                json.dump(metrics, f, indent=2)
            log.info("done: valid ppl %.2f, test ppl %s, %.0f train tokens/s -> %s/model.pt", metrics["valid_ppl"],
                     "n/a" if metrics["test_ppl"] is None else f"{metrics['test_ppl']:.2f}", metrics["train_tokens_per_s"], opts.out)
        ok = True
        return metrics
    except FloatingPointError as e:
        raise ValueError(str(e)) from None
    finally:
        shutdown(runtime, ok)
