"""Everything distributed in one place: the process group from ``torchrun``'s environment, and the
gathers that make N ranks with batch B train like one process with batch N*B.

Every rank draws the same global batch (same seed) and encodes its own slice; the embeddings are
gathered with gradients (open_clip's gather-with-grad), every rank computes the loss over the whole
global batch, and train/step.py's ``average_gradients`` averages the parameter gradients.
``all_gather``'s backward sums the gradient of every rank's copy of the loss into the local slice,
so the local gradient is N times d(loss)/d(local), and the mean over N ranks is exactly
d(loss)/d(params).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn

#: How long a rank waits for the others at a collective before the job fails.
DIST_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job: rank r of ``world_size``, and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, checkpoints and validation results."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every rank (no-op in one process)."""
        if self.enabled:
            dist.barrier()

    def main_says(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (a decision only rank 0 can take, e.g. to stop early)."""
        if not self.enabled:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        dist.broadcast(value, src=0)
        return bool(value.item())


def init_distributed() -> Distributed:
    """Join the process group ``torchrun`` describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR);
    NCCL on GPUs, gloo on CPU. Without those variables: one process, on the GPU if there is one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world_size == 1:
        return Distributed(device=torch.device("cuda" if cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        # ranks wait at barriers while rank 0 validates over the whole catalog or merges embedding
        # shards: longer than the default 10 (NCCL) / 30 (gloo) minutes on a large catalog
        dist.init_process_group("nccl" if cuda else "gloo", timeout=DIST_TIMEOUT)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    return Distributed(dist.get_rank(), dist.get_world_size(), device)


def gather_with_grad(tensor: torch.Tensor, context: Distributed) -> torch.Tensor:
    """Concatenate every rank's ``tensor`` (same shape on all ranks) along dim 0, keeping gradients."""
    if not context.enabled:
        return tensor
    # Deprecated since torch 2.6 in favour of _functional_collectives, whose backward is a
    # reduce-scatter that gloo lacks; this one falls back to all-to-all on gloo, so CPU jobs work.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed.nn.functional.all_gather is deprecated")
        return torch.cat(dist_fn.all_gather(tensor), dim=0)

