"""Overlap reading with rescoring: a background worker prepares the next batch while the current
one is scored, so the LM device does not wait for the parser."""
import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_END = object()


def prefetch(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Iterate over ``items``, producing up to ``depth`` items ahead in a background thread.

    Order is kept. An exception raised while producing an item is raised here, at that item.
    When the consumer stops early (break, exception), the worker stops after its current item.

    Args:
        items: any iterable (e.g. :func:`lattices.reader.iter_lattice_batches`).
        depth: how many items may wait ready (>= 1).
    """
    if depth < 1:
        raise ValueError(f"prefetch depth must be >= 1, got {depth}")
    ready: "queue.Queue" = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as e:  # handed to the consumer
            put((_END, e))
            return
        put((_END, None))

    worker = threading.Thread(target=work, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = ready.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        worker.join()
