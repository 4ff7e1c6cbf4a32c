"""Several processes, one run: torchrun's environment, the process group, the device, gathering across ranks.

``torchrun --nproc-per-node=N -m stgcn_pyg train ...`` sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them and joins the group (NCCL on CUDA, gloo on
the CPU). Without them everything runs as a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import ConfigError

__all__ = ["DistContext", "init_distributed", "resolve_device", "gather_rows", "shard_indices"]


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.initialized_here and dist.is_initialized():
            dist.destroy_process_group()
            self.initialized_here = False


def resolve_device(name: str, local_rank: int = 0, option: str = "train.device") -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else the CPU; errors name ``option``."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{option}: unknown device {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{option}: {name!r} asked for, but CUDA is not available here")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def init_distributed(device_name: str = "auto") -> DistContext:
    """Join the process group described by torchrun's environment variables (if any)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    device = resolve_device(device_name, local_rank)
    ctx = DistContext(rank, world_size, local_rank, device)
    if world_size > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, init_method="env://",
                                    **({"device_id": device} if device.type == "cuda" else {}))
            ctx.initialized_here = True
    return ctx


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """Rows ``rank, rank + world, ...`` of n: each rank's share of a table (balanced to within one)."""
    return list(range(rank, n, world_size))


def gather_rows(local: torch.Tensor, n: int, ctx: DistContext) -> torch.Tensor:
    """Reassemble a [n, D] tensor whose rows were split with :func:`shard_indices`.

    Every rank contributes its rows (padded to equal length for
    ``all_gather``) and every rank receives the full tensor, rows in their
    original order.
    """
    if not ctx.enabled:
        return local
    per_rank = (n + ctx.world_size - 1) // ctx.world_size
    device = ctx.device if ctx.device.type == "cuda" else torch.device("cpu")
    padded = local.new_zeros((per_rank,) + tuple(local.shape[1:])).to(device)
    padded[: local.size(0)] = local.to(device)
    chunks = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(chunks, padded)
    out = local.new_empty((n,) + tuple(local.shape[1:]))
    for r, chunk in enumerate(chunks):
        rows = shard_indices(n, r, ctx.world_size)
        out[rows] = chunk[: len(rows)].to(out.device)
    return out
