"""Data-parallel training over the processes torchrun starts: ``torchrun --nproc_per_node=N -m mnist_exp ...``.

Every process composes the same config and trains the same model on its share of each batch;
DistributedDataParallel averages the gradients, so with ``trainer.batch_size`` as the global
batch a step is the single-process step. Rank 0 alone writes the run directory (logs, TensorBoard,
checkpoints, metrics.json); the others write nothing. Outside torchrun every function here is a no-op.
"""

import contextlib
import os

import torch
import torch.distributed as dist

from mnist_exp.errors import UserError, first_line


def torchrun_number(name: str, default: int) -> int:
    """A count torchrun sets in each process's environment (``RANK``, ``WORLD_SIZE``); ``default`` outside it."""
    text = os.environ.get(name, str(default))
    if not text.isdigit():  # as mnist_exp.errors.other_rank reads it
        raise UserError(f"{name}={text} in the environment is not a whole number: torchrun sets it in the processes it "
                        f"starts; outside torchrun, unset it (unset {name}).")
    return int(text)


def rank() -> int:
    return torchrun_number("RANK", 0)


def world_size() -> int:
    return torchrun_number("WORLD_SIZE", 1)


def is_distributed() -> bool:
    return world_size() > 1


def non_writer_overrides() -> list[str]:
    """Hydra overrides for ranks other than 0: compose the same config, create and log nothing."""
    return ["hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=disabled"] if rank() > 0 else []


def setup(device: torch.device, batch_size: int) -> torch.device:
    """Join the process group (gloo on the CPU, nccl on CUDA); returns this process's device."""
    if not is_distributed():
        return device
    if batch_size % world_size():
        raise UserError(f"trainer.batch_size={batch_size} is the global batch: it must divide among the "
                        f"{world_size()} processes (e.g. trainer.batch_size="
                        f"{max(batch_size - batch_size % world_size(), world_size())}).")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model that averages its gradients over the processes (the model itself outside torchrun)."""
    if not is_distributed():
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


@contextlib.contextmanager
def rank_zero_first():
    """Rank 0 runs the block first (fetching the data, say); the others then find what it left."""
    if is_distributed() and rank() > 0:
        try:
            dist.barrier()
        except RuntimeError as error:  # gloo and nccl: process 0 failed in the block and its own line says why
            raise UserError(f"process {rank()} stopped: process 0 ended before it ({first_line(error)}).") from None
    yield
    if is_distributed() and rank() == 0:
        dist.barrier()


def broadcast(value):
    """Rank 0's ``value`` on every rank (a picklable object, e.g. the run directory)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_over_ranks(*tensors: torch.Tensor) -> None:
    """Sum each tensor over the processes, in place."""
    if is_distributed():
        for tensor in tensors:
            dist.all_reduce(tensor)


def sum_of(value: float, device: torch.device) -> float:
    """A number summed over the processes (the number itself outside torchrun): NaN or inf if one process's is."""
    if not is_distributed():
        return value
    total = torch.tensor(value, dtype=torch.float64, device=device)  # float32 losses: no sum of them overflows
    dist.all_reduce(total)
    return total.item()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if it is true on one: all stop at the same batch, none waits for the others forever."""
    if not is_distributed():
        return flag
    value = torch.tensor(float(flag), device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
