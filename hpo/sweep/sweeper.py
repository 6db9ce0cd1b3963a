"""The Optuna sweeper: ask a trial, launch it as a Hydra job, tell the result, repeat.

Registered as `hydra/sweeper=optuna` by the shim in `hydra_plugins/fmnist_hpo_sweeper/`.
Public Optuna API only (`study.ask(fixed_distributions=...)`, `study.tell`). With a parallel
launcher, each of `n_jobs` slots launches one trial at a time, so a pruned trial's slot gets
the next trial at once instead of waiting for the rest of a batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Literal, cast

import optuna
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from hpo.sweep import report
from hpo.sweep.progress import SweepProgress, describe, job_outcome
from hpo.sweep.search_space import SearchSpace, SearchSpaceError, parse_search_space, render_value
from hpo.sweep.storage import StorageUnavailableError, open_storage
from hpo.sweep.trial_link import LINK_KEY, TrialLink, register_trial, unregister_trial

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
StudyDirectionName = Literal["minimize", "maximize"]
DIRECTIONS = ("minimize", "maximize")


class SweepFailedError(RuntimeError):
    """Too many trials failed (more than `max_failure_rate`)."""


class OptunaSweeperImpl(Sweeper):
    """See `hpo.sweep.config.OptunaSweeperConf` for the settings."""

    def __init__(
        self,
        sampler: Any,
        pruner: Any,
        direction: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        params: Any = None,
        custom_search_space: str | None = None,
        timeout: float | None = None,
        load_if_exists: bool = True,
        search_space: Any = None,
    ) -> None:
        if search_space:
            raise ValueError(
                "hydra.sweeper.search_space is the old (hydra-optuna-sweeper < 1.2) format; "
                "write the space as hydra.sweeper.params in Hydra's sweep grammar, "
                "e.g. params: {model.width: choice(16, 32)}"
            )
        for name, node in (("sampler", sampler), ("pruner", pruner)):
            if not OmegaConf.is_dict(node) or "_target_" not in node:
                raise ValueError(
                    f"hydra.sweeper.{name}={node!r} is not a {name} config; pick one with "
                    f"hydra/sweeper/{name}=<option> (see `python train.py --help`)"
                )
        self.sampler_cfg, self.pruner_cfg = sampler, pruner
        self.directions = _directions(direction)
        self.storage, self.study_name = storage, study_name
        self.n_trials, self.n_jobs = (
            _at_least("n_trials", n_trials, 1),
            _at_least("n_jobs", n_jobs, 1),
        )
        if not 0.0 <= float(max_failure_rate) <= 1.0:
            raise ValueError(f"hydra.sweeper.max_failure_rate={max_failure_rate} must be in [0, 1]")
        self.max_failure_rate = float(max_failure_rate)
        self.params: dict[str, Any] | None = (
            cast(dict[str, Any], OmegaConf.to_container(params, resolve=True))
            if OmegaConf.is_config(params)
            else params
        )
        self.custom_search_space = get_method(custom_search_space) if custom_search_space else None
        if timeout is not None and timeout <= 0:
            raise ValueError(f"hydra.sweeper.timeout={timeout} must be > 0 seconds (or null)")
        self.timeout, self.load_if_exists = timeout, load_if_exists
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Launcher | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    # --- the sweep ------------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> optuna.Study:
        """Run the study; user errors end the process with a message, not a traceback."""
        try:
            return self._sweep(arguments)
        except (SearchSpaceError, StorageUnavailableError, SweepFailedError) as exc:
            log.error("%s", exc)
            raise SystemExit(1) from exc
        except KeyboardInterrupt:
            log.warning("Interrupted: rerun the same command to continue the study")
            raise SystemExit(130) from None

    def _sweep(self, arguments: list[str]) -> optuna.Study:
        assert self.config is not None and self.launcher is not None
        space = parse_search_space(
            self.params, arguments, config=self.config, group_options=self._group_options
        )
        study = self._open_study(space)
        _requeue(
            study,
            [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING],
            why="was left RUNNING by an interrupted sweep",
        )
        parent = report.open_parent_run(self.config, study, self.storage)
        slots = self._slots()
        log.info(
            "Study %r in %s: %d of %d trials finished; sampler %s, pruner %s, %d at once",
            study.study_name,
            self.storage or "memory",
            _finished(study),
            self.n_trials,
            type(study.sampler).__name__,
            type(study.pruner).__name__,
            slots,
        )
        progress = SweepProgress()
        status = "FINISHED"
        try:
            self._run(study, space, progress, slots, parent.run_id if parent else None)
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        except BaseException:
            status = "FAILED"
            raise
        finally:
            sweep_dir = Path(self.config.hydra.sweep.dir)
            report.finish(study, progress, parent, sweep_dir, status)
        self._check_failures(progress)
        return study

    def _run(
        self,
        study: optuna.Study,
        space: SearchSpace,
        progress: SweepProgress,
        slots: int,
        parent_run_id: str | None,
    ) -> None:
        running: dict[Future[JobReturn], optuna.Trial] = {}
        self._untold: dict[int, optuna.Trial] = {}
        pool = (
            ThreadPoolExecutor(max_workers=slots, thread_name_prefix="trial") if slots > 1 else None
        )
        try:
            while True:
                while len(running) < slots and self._may_start(study, progress, len(running)):
                    trial, overrides = self._ask(study, space, parent_run_id, slots)
                    if pool is None:  # in the main thread, so Ctrl-C stops the training
                        running[_done(self._launch(trial, overrides))] = trial
                    else:
                        running[pool.submit(self._launch, trial, overrides)] = trial
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    self._tell(study, running.pop(future), future.result(), progress)
        except BaseException:
            _requeue(study, list(self._untold.values()), why="was interrupted")
            raise
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def _ask(
        self, study: optuna.Study, space: SearchSpace, parent_run_id: str | None, slots: int
    ) -> tuple[optuna.Trial, list[str]]:
        trial = study.ask(fixed_distributions=space.distributions)
        values = {k: trial.params[k] for k in space.distributions}
        overrides = space.to_overrides(values)
        if self.custom_search_space is not None:
            self.custom_search_space(self.config, trial)
            overrides += [
                f"{k}={render_value(v)}" for k, v in trial.params.items() if k not in values
            ]
        shown = " ".join(overrides)
        if self._takes_part():
            link = TrialLink(
                study_name=study.study_name,
                storage=self.storage,
                trial_number=trial.number,
                parent_run_id=parent_run_id,
                workers=slots,
                pruner=cast(dict[str, Any], OmegaConf.to_container(self.pruner_cfg, resolve=True)),
            )
            overrides.append(link.to_override())
        register_trial(trial)
        self._untold[trial.number] = trial
        log.info("Trial %d: %s", trial.number, shown)
        return trial, overrides

    def _launch(self, trial: optuna.Trial, overrides: Sequence[str]) -> JobReturn:
        assert self.launcher is not None
        try:
            (result,) = self.launcher.launch([list(overrides)], initial_job_idx=trial.number)
            return result
        finally:
            unregister_trial(trial)

    def _tell(
        self, study: optuna.Study, trial: optuna.Trial, result: JobReturn, progress: SweepProgress
    ) -> None:
        outcome = job_outcome(result, len(self.directions))
        if outcome.error:
            trial.set_user_attr("error", outcome.error[:2000])
            progress.errors[trial.number] = outcome.error
        values = outcome.values
        study.tell(trial, values, state=outcome.state if values is None else None)
        self._untold.pop(trial.number, None)
        progress.told[trial.number] = outcome.state
        report.tag_child_run(self.config, study.study_name, trial.number, outcome.state.name)
        log.info("Trial %d %s %s", trial.number, outcome.state.name, describe(outcome))

    # --- policies -------------------------------------------------------------------------

    def _may_start(self, study: optuna.Study, progress: SweepProgress, running: int) -> bool:
        if _finished(study) + running >= self.n_trials:
            return False
        if self.timeout is not None and progress.seconds() > self.timeout:
            if running == 0:
                log.info("timeout of %.0f s reached: no new trials", self.timeout)
            return False
        return not self._too_many_failures(progress)

    def _too_many_failures(self, progress: SweepProgress) -> bool:
        failed = progress.count(TrialState.FAIL)
        return failed > 0 and failed / len(progress.told) > self.max_failure_rate

    def _check_failures(self, progress: SweepProgress) -> None:
        if not self._too_many_failures(progress):
            return
        failed = [n for n, s in progress.told.items() if s == TrialState.FAIL]
        details = "\n".join(f"  trial {n}: {progress.errors.get(n, '?')}" for n in failed)
        raise SweepFailedError(
            f"{len(failed)} of {len(progress.told)} trials failed, more than "
            f"max_failure_rate={self.max_failure_rate}; the sweep stopped:\n{details}\n"
            "Fix the cause, or raise hydra.sweeper.max_failure_rate to tolerate failures."
        )

    # --- set-up helpers -------------------------------------------------------------------

    def _open_study(self, space: SearchSpace) -> optuna.Study:
        sampler_kwargs: dict[str, Any] = {}
        if str(self.sampler_cfg.get("_target_", "")).endswith("GridSampler"):
            sampler_kwargs["search_space"] = space.grid()
            size = math.prod(len(v) for v in sampler_kwargs["search_space"].values())
            if size < self.n_trials:
                log.info("grid has %d points: n_trials %d -> %d", size, self.n_trials, size)
                self.n_trials = size
        sampler = instantiate(self.sampler_cfg, **sampler_kwargs)
        study = optuna.create_study(
            storage=open_storage(self.storage),
            sampler=sampler,
            pruner=instantiate(self.pruner_cfg),
            study_name=self.study_name,
            directions=cast(list[StudyDirectionName], list(self.directions)),
            load_if_exists=self.load_if_exists,
        )
        if [d.name.lower() for d in study.directions] != list(self.directions):
            raise ValueError(
                f"study {study.study_name!r} in {self.storage} was created with directions "
                f"{[d.name.lower() for d in study.directions]}, not {list(self.directions)}; "
                "use another hydra.sweeper.study_name or the original direction"
            )
        return study

    def _group_options(self, key: str) -> list[str] | None:
        assert self.hydra_context is not None
        options = self.hydra_context.config_loader.get_group_options(key)
        return list(options) or None

    def _takes_part(self) -> bool:
        """True for apps (like ours) whose config has a node to receive the trial link."""
        assert self.config is not None
        return LINK_KEY in self.config

    def _slots(self) -> int:
        assert self.launcher is not None
        # Hydra's default launcher (defined only in hydra._internal) runs one job at a time.
        if self.n_jobs > 1 and isinstance(self.launcher, BasicLauncher):
            log.warning(
                "n_jobs=%d but the basic launcher runs one job at a time in this process; "
                "use hydra/launcher=joblib for parallel trials",
                self.n_jobs,
            )
            return 1
        return self.n_jobs


def _requeue(study: optuna.Study, trials: Sequence[Any], why: str) -> None:
    """Mark unfinished trials FAIL and enqueue their params, so a rerun runs them again."""
    for trial in trials:
        number = trial.number
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        if trial.params:
            study.enqueue_trial(dict(trial.params), user_attrs={"requeued_from": number})
        log.warning("trial %d %s: marked FAIL, its params queued to run again", number, why)


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def _done(result: JobReturn) -> Future[JobReturn]:
    future: Future[JobReturn] = Future()
    future.set_result(result)
    return future


def _directions(direction: Any) -> tuple[str, ...]:
    raw = (
        [direction]
        if isinstance(direction, str) or not isinstance(direction, Sequence)
        else direction
    )
    names = tuple(str(getattr(d, "name", d)).lower() for d in raw)
    bad = [n for n in names if n not in DIRECTIONS]
    if not names or bad:
        raise ValueError(
            f"hydra.sweeper.direction={direction} must be minimize, maximize or a list of them"
        )
    return names


def _at_least(name: str, value: int, minimum: int) -> int:
    if not isinstance(value, int) or value < minimum:
        raise ValueError(f"hydra.sweeper.{name}={value} must be an integer >= {minimum}")
    return value
