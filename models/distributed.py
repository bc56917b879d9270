"""Device choice and (optional) torchrun/DDP set-up; a single process needs nothing special."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Runtime:
    """Where this process runs. ``rank``/``world_size`` are 0/1 outside torchrun."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but no CUDA device is available")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def init_runtime(device: str) -> Runtime:
    """Start DDP when launched by ``torchrun`` (``WORLD_SIZE`` > 1), else a single process.

    Uses NCCL with one GPU per process (``LOCAL_RANK``) on CUDA, gloo on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        return Runtime(dev, dist.get_rank(), dist.get_world_size())
    return Runtime(dev)


def all_reduce_sum(value: float, runtime: Runtime) -> float:
    """Sum a number over all processes (identity in a single process)."""
    if not runtime.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=runtime.device)
    dist.all_reduce(t)
    return float(t.item())


def shutdown(runtime: Runtime, ok: bool = True) -> None:
    """Leave the process group: after success, every rank meets at a barrier and then destroys it.

    After a failure the group is left to process exit: destroying it while other ranks may still
    be inside a collective can deadlock (pytorch/pytorch#75097).
    """
    if runtime.distributed and dist.is_initialized() and ok:
        dist.barrier()
        dist.destroy_process_group()
