"""Training on several processes with PyTorch's own engine (DESIGN.md §7): torchrun + DDP.

This module holds the process context and its collectives; the rank-averaged optimiser step is
the stage runner's (training/runner.py), sharded evaluation is training/sharded_eval.py and the
teacher's DDP routing training/teacher_ddp.py.

    torchrun --standalone --nproc_per_node N -m murid_engine train --project DIR ...

runs the same code path as one process. torchrun starts N copies of the command and gives each
RANK, WORLD_SIZE and LOCAL_RANK in its environment; without them (a plain `murid train`, the
GUI) `DistContext()` is a single process and every helper below is a no-op, so one process
computes exactly what it did before distribution existed.

What the rest of the engine relies on:

- every rank builds the same model; DistributedDataParallel broadcasts rank 0's weights and
  buffers when it is built and averages the gradients in backward, so the parameters stay equal
  on every rank (PyTorch DDP docs: "gradients from each node are averaged");
- each rank draws different training data: the batch loader takes the rank and world size
  (training.loader), and the other random streams (ClassMix, MR mixing) are per rank
  (`reseed_rank`);
- only rank 0 writes into the project; collectives (`agree`, `gather_to_main`, ...) order
  the other ranks after what rank 0 wrote;
- every collective is entered by every rank at the same point of the loop (the loop lengths
  depend on the config only), so no rank waits for one that went elsewhere. A rank that dies
  closes its connections: gloo fails the others at once and torchrun stops them; the process
  group's timeout bounds any other wait.

BatchNorm stays per rank, on the CPU and on GPUs (no SyncBatchNorm), because
(1) the teacher switches its BatchNorms to the batch's own statistics inside a forward
(per-domain statistics, models/teacher.py), and rank 0 alone builds a source bank in that mode
for each live preview: with SyncBatchNorm every such forward would be a collective the other
ranks never enter (a deadlock); (2) per-rank statistics over a per-process batch are what one
GPU computes, so N processes run the one-GPU recipe N times over; (3) SyncBatchNorm is
CUDA-only, so the CPU test would not test the GPU's code. DDP broadcasts rank 0's buffers at
each forward (broadcast_buffers, its default) and `sync_buffers` does before evaluation and
pseudo-labelling, so what is scored and labelled is what rank 0 saves.

Backends: gloo for CPU tensors, NCCL for CUDA tensors. With a GPU the group is created as
"cpu:gloo,cuda:nccl" (torch.distributed.init_process_group accepts one backend per device
type), so DDP on CUDA models uses NCCL while the small object and scalar collectives here, on
CPU tensors, use gloo; the device can then be chosen after the project's config is read.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from murid_engine.data.base import Dataset
from murid_engine.devices import resolve_device
from murid_engine.errors import UserError

T = TypeVar("T")
TIMEOUT_ENV = "MURID_DIST_TIMEOUT_S"
# Every wait on another rank is bounded. Rank 0 alone writes a round's label pass and the
# checkpoints while the others wait, so the bound is generous (PyTorch's NCCL default is 10 min).
DEFAULT_TIMEOUT_S = 1800


class RanksAgree(UserError):
    """A user's mistake every rank raises at the same point: only rank 0 reports it."""


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise UserError(f"the environment variable {name}={value!r} is not an integer "
                        "(torchrun sets it; leave it unset for one process)") from None


@dataclass(frozen=True)
class DistContext:
    """This process's place among the training processes, and its device."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the one rank that writes into the project and reports to the user."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "DistContext":
        """The rank torchrun gave this process (RANK, WORLD_SIZE, LOCAL_RANK); else one process."""
        environ = os.environ if environ is None else environ
        world = _env_int(environ, "WORLD_SIZE")
        if world is None or world <= 1:
            return cls()
        rank = _env_int(environ, "RANK")
        local = _env_int(environ, "LOCAL_RANK")
        if rank is None or not 0 <= rank < world:
            raise UserError(f"WORLD_SIZE is {world} but RANK is {environ.get('RANK')!r}; "
                            "start several processes with torchrun")
        return cls(rank=rank, world_size=world, local_rank=rank if local is None else local)

    def on_device(self, name: str) -> "DistContext":
        """This context on the config's device: under torchrun a GPU run uses cuda:LOCAL_RANK
        (one GPU per process, whatever index the config names)."""
        device = resolve_device(name)
        if self.distributed and device.type == "cuda":
            count = torch.cuda.device_count()
            if self.local_rank >= count:
                raise UserError(f"process {self.local_rank} of this machine needs cuda:{self.local_rank}, "
                                f"but there are {count} GPUs; start at most {count} processes per machine")
            device = torch.device("cuda", self.local_rank)
        return replace(self, device=device)

    # ------------------------------------------------------------------------ collectives
    def barrier(self) -> None:
        self.any(False)

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's `obj` on every rank (picklable)."""
        if not self.distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def agree(self, fn: Callable[[], T]) -> T:
        """Run `fn` on rank 0 and give its result to every rank; when it raises a UserError,
        every rank raises it (RanksAgree: reported once), so no rank goes on alone."""
        result: Any = None
        error: str | None = None
        if self.is_main:
            try:
                result = fn()
            except UserError as exc:
                if not self.distributed:
                    raise
                error = str(exc)
        if not self.distributed:
            return result
        result, error = self.broadcast_object((result, error))
        if error is not None:
            raise RanksAgree(error)
        return result

    def main_first(self, fn: Callable[[], T]) -> T:
        """`fn()` on rank 0 first, then on the other ranks (each gets its own result).

        For a step that reads the user's files (datasets, checkpoints): a mistake there stops
        every rank with rank 0's one sentence instead of one per rank, and what rank 0 makes
        on the way (a decoded-image cache) the others then find made.
        """
        made: list[T] = []
        self.agree(lambda: made.append(fn()))
        return made[0] if made else fn()

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is True on any (one small all-reduce)."""
        if not self.distributed:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean_values(self, values: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Scalar tensors averaged over the ranks, as floats (one all-reduce for all of them).

        The same on every rank, so a check on them (a non-finite loss) stops every rank together.
        """
        keys = list(values)
        if not keys:
            return {}
        t = torch.stack([values[k].detach().float().reshape(()) for k in keys]).cpu()
        if self.distributed:
            dist.all_reduce(t)
            t /= self.world_size
        return dict(zip(keys, t.tolist()))

    def sum_array(self, array: np.ndarray) -> np.ndarray:
        """An integer or float array summed over the ranks (e.g. confusion matrices)."""
        if not self.distributed:
            return array
        t = torch.from_numpy(np.ascontiguousarray(array))
        dist.all_reduce(t)
        return t.numpy()

    def gather_to_main(self, obj: T) -> list[T] | None:
        """Every rank's `obj`, in rank order, on rank 0; None on the other ranks."""
        if not self.distributed:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def sync_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank.

        BatchNorm is per rank, so after a training step each rank's running statistics have
        moved with its own batch (DDP broadcasts rank 0's at the start of each forward, then
        the forward updates them locally). Evaluating or pseudo-labelling on every rank with
        rank 0's statistics gives exactly what the checkpoint (rank 0's) scores and labels.
        The parameters need nothing: DDP keeps them equal.
        """
        if not self.distributed:
            return
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)

    # ----------------------------------------------------------------------- the work
    def wrap(self, module: nn.Module, find_unused: bool = False) -> nn.Module:
        """`module` in DistributedDataParallel when there are several ranks; else itself.

        `find_unused`: some parameters of `module` take no part in this stage's loss (DDP then
        marks them ready itself instead of waiting for their gradients forever).
        """
        if not self.distributed:
            return module
        gpu = self.device.type == "cuda"
        return DistributedDataParallel(module, device_ids=[self.device] if gpu else None,
                                       find_unused_parameters=find_unused)

    def shard(self, dataset: Dataset) -> Dataset:
        """This rank's images of `dataset` (indices rank::world_size): a shallow copy."""
        if not self.distributed:
            return dataset
        part = copy.copy(dataset)
        part.samples = dataset.samples[self.rank::self.world_size]
        return part

    def reseed_rank(self, seed: int, np_rng: np.random.Generator,
                    gen: torch.Generator | None = None, salt: int = 0) -> None:
        """Give ranks > 0 their own random streams (data order, crops, augmentations).

        Rank 0 keeps its streams (seeded from `seed`, or restored from a checkpoint, which holds
        rank 0's), so one process draws exactly what it did before; rank r draws from
        (seed, r, salt), `salt` being e.g. the resumed iteration.
        """
        if self.rank == 0:
            return
        seq = np.random.SeedSequence([seed, self.rank, salt])
        np_rng.bit_generator.state = type(np_rng.bit_generator)(seq).state
        words = seq.generate_state(2, dtype=np.uint64)
        if gen is not None:
            gen.manual_seed(int(words[0] >> np.uint64(1)))
        torch.manual_seed(int(words[1] >> np.uint64(1)))  # the model's own draws (MR mixing)


def timeout_from_env(environ: Mapping[str, str] | None = None) -> timedelta:
    environ = os.environ if environ is None else environ
    seconds = _env_int(environ, TIMEOUT_ENV)
    return timedelta(seconds=seconds if seconds and seconds > 0 else DEFAULT_TIMEOUT_S)


@contextmanager
def distributed_session(environ: Mapping[str, str] | None = None) -> Iterator[DistContext]:
    """The process group for the duration of a command (none for a single process)."""
    ctx = DistContext.from_env(environ)
    if not ctx.distributed or dist.is_initialized():
        yield ctx
        return
    backend = "gloo"
    if torch.cuda.is_available():
        # NCCL needs each process's GPU chosen before its first collective.
        torch.cuda.set_device(ctx.local_rank % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend, timeout=timeout_from_env(environ))
    try:
        yield ctx
        # Every rank has finished its collectives before any tears the group down: a rank that
        # exits first can abort a peer still inside gloo ("terminate called without an active
        # exception", seen once in the two-process test). Skipped on an error, which must not wait.
        dist.barrier()
    finally:
        dist.destroy_process_group()
