"""Mixed precision: which autocast dtype a device gets, and the context that applies it.

`trainer.precision` is `auto`, `fp32`, `bf16` or `fp16`. Autocast wraps the forward pass
and the loss only (training, validation and test alike); backward and the optimizer step
run outside it, on fp32 weights. With the backward pass inside autocast as well, a bf16
run on this project's CPUs stopped learning (loss stuck at 2.30). Weights, checkpoints and
the registered model stay fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """A resolved precision for one device: `fp32`, `bf16` or `fp16`."""

    name: str
    device_type: str

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype; None for plain fp32."""
        return _DTYPES.get(self.name)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context for a forward pass (and its loss) at this precision."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none."""
        if self.name != "fp16":
            return None
        return torch.amp.GradScaler(self.device_type)


FP32 = Precision("fp32", "cpu")


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 instructions (AVX512-BF16 or AMX), where bf16 autocast is fast.

    torch exposes its CPU feature probes only as these `torch.cpu._is_*` functions; where a
    build lacks them, the answer is False and `auto` stays fp32 (correct, only slower).
    """
    probes: list[Callable[[], bool]] = [
        getattr(torch.cpu, name)
        for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        if hasattr(torch.cpu, name)
    ]
    return any(probe() for probe in probes)


def resolve_precision(spec: str, device: torch.device) -> Precision:
    """Turn `trainer.precision` into the precision `device` runs at.

    `auto` is bf16 on a CPU with native bf16 and on a CUDA GPU that supports it, fp32
    elsewhere (other CPUs emulate bf16 slowly; MPS autocast is not used here).

    Raises:
        ValueError: for an unknown name, fp16 off CUDA, or bf16 on a GPU without it.
    """
    kind = device.type
    if spec not in PRECISION_CHOICES:
        raise ValueError(f"trainer.precision={spec!r} is not one of {', '.join(PRECISION_CHOICES)}")
    if spec == "auto":
        if kind == "cuda":
            spec = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        elif kind == "cpu":
            spec = "bf16" if cpu_has_native_bf16() else "fp32"
        else:
            spec = "fp32"
    if spec == "fp16" and kind != "cuda":
        raise ValueError(
            f"trainer.precision=fp16 needs a CUDA device, but this run is on {kind}; "
            "use trainer.precision=auto (bf16 where the CPU has it) or bf16"
        )
    if spec == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            "trainer.precision=bf16 but this GPU has no bf16 support; use fp16 or auto"
        )
    if spec == "bf16" and kind == "mps":
        raise ValueError("trainer.precision=bf16 is not supported on mps here; use fp32")
    return Precision(spec, kind)
