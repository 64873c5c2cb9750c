"""The process's set-up for a run: which device, how many CPU threads, seeds, determinism."""

import os
import random

import numpy as np
import torch

from mnist_exp.errors import UserError


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; asking for one that is absent is a user error."""
    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise UserError("device=cuda, but no CUDA GPU is visible to torch (torch.cuda.is_available() is False). "
                        "Use device=auto or device=cpu.")
    if name == "mps" and not mps:
        raise UserError("device=mps, but Apple's MPS backend is not available here. Use device=auto or device=cpu.")
    return torch.device(name)


def set_cpu_threads(threads: int) -> int:
    """Use ``threads`` intra-op threads, or (0) every core this process may run on, not every core of the machine."""
    count = threads if threads > 0 else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(count)
    return count


def use_bf16(precision: str, device: torch.device) -> bool:
    """``auto`` turns on bf16 autocast where it pays (CUDA); fp32 elsewhere."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too
    if deterministic:
        # cuBLAS needs this workspace setting to be deterministic; harmless elsewhere.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
