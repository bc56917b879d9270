"""Run a computation over ``[0, total)`` in chunks, shrinking the chunk on CUDA out-of-memory."""
from typing import Callable, Optional

import torch
from tqdm import tqdm


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a CUDA out-of-memory error (any torch version)."""
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(error, oom)) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


def run_in_chunks(total: int, size: int, step: Callable[[int, int], None], desc: Optional[str] = None,
                  progress: bool = False) -> int:
    """Call ``step(start, end)`` for consecutive chunks covering ``[0, total)``.

    On CUDA out-of-memory inside ``step``, the cache is emptied and *that* chunk is retried with
    half the size; chunks that already finished are not redone, and later chunks keep the
    smaller size. ``step`` must therefore write its results only once it has succeeded.

    Args:
        total: number of items.
        size: items per chunk (>= 1).
        step: does the work for items ``[start, end)``.
        desc, progress: label and switch of a progress bar over the items.

    Returns:
        The chunk size in use at the end (smaller than ``size`` after an out-of-memory).

    Raises:
        The out-of-memory error itself when a chunk of one item does not fit.
    """
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    bar = tqdm(total=total, desc=desc, unit="item", disable=not progress or total <= size, mininterval=1.0)
    start = 0
    try:
        while start < total:
            end = min(start + size, total)
            try:
                step(start, end)
            except (RuntimeError, MemoryError) as e:
                if not is_out_of_memory(e) or end - start <= 1:
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                size = max(1, (end - start) // 2)
                continue
            bar.update(end - start)
            start = end
    finally:
        bar.close()
    return size
