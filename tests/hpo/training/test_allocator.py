"""glibc keeps a training step's freed buffers: memory used again is not faulted in again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hpo.training import allocator

ROOT = Path(__file__).resolve().parents[3]

# Eight 7 MiB buffers live at once and freed together, as a step's activations, ten times.
# If freed memory went back to the kernel (trimmed heap top, or per-buffer mmap), every
# round would fault its 56 MiB in again: about 143k minor faults. With the thresholds fixed
# the heap keeps it (0 to 1.8k faults seen, about one buffer). glibc's defaults vary with
# the heap's history (1.8k to 107k in the same probe), so this checks the kept case only.
_PROBE = """
import resource, torch
from hpo.training.allocator import keep_freed_memory
assert keep_freed_memory() and keep_freed_memory()
def one_round():
    held = [torch.ones(7 * 2**18) for _ in range(8)]
    del held
for _ in range(2):
    one_round()
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    one_round()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_buffers_are_reused_without_page_faults() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert int(out.stdout) < 14_000  # under a tenth of the memory faulted in again


class _FakeLibc:
    def __init__(self, answer: int) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answer


@pytest.mark.parametrize(("answer", "applied"), [(1, True), (0, False)])
def test_both_thresholds_are_set_once(monkeypatch, answer: int, applied: bool) -> None:
    fake = _FakeLibc(answer)
    monkeypatch.setattr(allocator, "_done", False)
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: fake)
    assert allocator.keep_freed_memory() is applied
    # M_MMAP_THRESHOLD = -3 (also ends the dynamic threshold), M_TRIM_THRESHOLD = -1.
    assert fake.calls == [(-3, 32 * 2**20), (-1, 256 * 2**20)]
    fake.calls.clear()
    assert allocator.keep_freed_memory() is applied
    assert bool(fake.calls) is not applied  # applied once per process; a refusal retries


def test_other_platforms_are_left_alone(monkeypatch) -> None:
    monkeypatch.setattr(allocator, "_done", False)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False
