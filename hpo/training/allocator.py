"""Keep glibc from handing the training step's memory back to the kernel after every step.

A CPU training step allocates and frees the same large activation buffers over and over.
With glibc's defaults, buffers above a moving mmap threshold are mapped and unmapped each
time, and the heap top is trimmed back to the kernel, so every step page-faults its memory
in again. On this project's 2-core machines that cost about a quarter of the step time
(SeedCNN, bf16: 3.9 million page faults and 4,100-7,000 img/s over two epochs, against
0.13 million and 7,400-7,600 img/s with the settings below), and one batch of another size
(an epoch's remainder) moved the threshold so that every later step paid it (bench/README.md).
Fixing both thresholds keeps freed buffers in the heap for reuse.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts on 64-bit (HEAP_MAX_SIZE / 2): buffers above it
# are still mapped per use. Setting it also switches off the dynamic threshold.
MMAP_THRESHOLD_BYTES = 32 * 2**20
# Freed memory kept at the heap top before glibc returns it to the kernel.
TRIM_THRESHOLD_BYTES = 256 * 2**20

_done = False


def keep_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (once); True if applied.

    A no-op returning False off Linux or with another C library (musl, macOS), where the
    settings do not exist; training is then correct, only possibly slower.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    applied = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    applied = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and applied
    if applied:
        _done = True
        log.debug(
            "glibc malloc: mmap threshold %d, trim threshold %d",
            MMAP_THRESHOLD_BYTES,
            TRIM_THRESHOLD_BYTES,
        )
    return applied
