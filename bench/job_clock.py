"""A Hydra callback that logs when each job of a sweep starts and ends (for bench/scale.py).

Hydra calls `on_job_start` just before the task function and `on_job_end` just after it
returns, in the process that runs the job (the sweep process itself with the default
launcher). With the sweeper's own lines ("Trial N: ..." when a trial has been asked,
"Trial N COMPLETE ..." when it has been told), a worker's log then times each part of a
trial's cycle: tell, ask, launch (Hydra composing the job's config) and the task.

Enabled per run with an override, without touching the app or the sweeper:
`+hydra.callbacks.job_clock._target_=bench.job_clock.JobClock` (the project root is on the
workers' sys.path through the editable install). It imports only Hydra, so a worker pays
nothing else for it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("bench.job_clock")

# The override that enables it, and the two line formats scale.py reads back.
OVERRIDE = "+hydra.callbacks.job_clock._target_=bench.job_clock.JobClock"
STARTED = "job %d started at %.6f"
ENDED = "job %d ended at %.6f"


class JobClock(Callback):
    """Logs `time.time()` (microseconds) at the start and at the end of every job."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        log.info(STARTED, config.hydra.job.num, time.time())

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        log.info(ENDED, config.hydra.job.num, time.time())
