"""Pick the compute device and the number of CPU threads."""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(spec: str) -> torch.device:
    """Turn `trainer.device` into a device: `auto` = cuda, then mps, then cpu.

    Raises:
        ValueError: for an unknown name or a device this machine does not have.
    """
    name = spec.split(":")[0]
    if name not in DEVICE_CHOICES:
        raise ValueError(f"trainer.device={spec!r} is not one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"trainer.device={spec!r} but CUDA is not available; use device=auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"trainer.device={spec!r} but MPS is not available; use device=auto")
    return torch.device(spec)


def configure_threads(num_threads: int | None, workers: int = 1) -> int:
    """Set torch's intra-op threads: `num_threads`, or the cores shared among `workers`.

    Parallel sweep workers each get cores // workers threads, so k trials at once do not
    oversubscribe the CPU (which slows every one of them down).
    """
    if num_threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        num_threads = max(1, (cores or os.cpu_count() or 1) // max(1, workers))
    if num_threads < 1:
        raise ValueError(f"trainer.num_threads={num_threads} must be >= 1 (or null for all cores)")
    torch.set_num_threads(num_threads)
    log.debug("torch uses %d threads", num_threads)
    return num_threads
