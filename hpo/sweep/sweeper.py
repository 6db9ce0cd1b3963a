"""The Optuna sweeper: ask a trial, launch it as a Hydra job, tell the result, repeat.

Registered as `hydra/sweeper=optuna` by the shim in `hydra_plugins/fmnist_hpo_sweeper/`.
Public Optuna API for the study (`study.ask(fixed_distributions=...)`, `study.tell`). With a
parallel launcher, each of `n_jobs` slots launches one trial at a time, so a pruned trial's
slot gets the next trial at once instead of waiting for the rest of a batch.

Many sweep processes (workers, on one host or many) can share one study: the first to start
creates it, `n_trials` is the study's total, and Optuna's heartbeats (`liveness.py`) fail
and retry the trials of a worker that died.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.errors import ConfigCompositionException
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import RunError, UsageError, exit_on_user_error, first_line
from hpo.sweep import deadline, liveness, report
from hpo.sweep.fidelity import PROMOTED_FROM_ATTR, RUNG_ATTR, Fidelity, carried_attrs
from hpo.sweep.liveness import RUN_ID_ATTR, WORKER_ATTR, Heartbeat, Liveness
from hpo.sweep.progress import Outcome, SweepProgress, describe, job_outcome
from hpo.sweep.search_space import SearchSpace, parse_search_space, render_value
from hpo.sweep.storage import open_storage
from hpo.sweep.trial_link import LINK_KEY, TrialLink, register_trial, unregister_trial
from hpo.urls import STORAGE_PASSWORD_ENV, SecretUrl

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# The MLflow `trial_state` of a multi-fidelity run that finished a budget below the top one.
RUNG_DONE = "RUNG_DONE"
DIRECTIONS = ("minimize", "maximize")
# How often a worker waiting on other workers' trials looks at the study again.
OTHERS_POLL_S = 5
# Hydra's default launcher, recognised by its config: the class lives in hydra._internal.
BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


class SweepFailedError(RunError):
    """Too many trials failed (more than `max_failure_rate`)."""


class SweeperConfigError(UsageError, ValueError):
    """A `hydra.sweeper.*` setting is wrong, or does not fit the study it names."""


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
        check_job_config: str | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        fidelity: Any = None,
        enqueue_trials: Any = None,
        load_if_exists: bool = True,
        heartbeat_interval: int = 30,
        grace_period: int = 120,
        max_retry: int = 2,
        search_space: Any = None,
    ) -> None:
        # Checked when the sweep starts (`_check_settings`), inside the one place that turns
        # a user error into its message: Hydra builds this object outside `sweep`.
        self._settings = dict(
            sampler=sampler,
            pruner=pruner,
            direction=direction,
            n_trials=n_trials,
            n_jobs=n_jobs,
            max_failure_rate=max_failure_rate,
            timeout=timeout,
            deadline=deadline,
            fidelity=_container(fidelity),
            enqueue_trials=_container(enqueue_trials),
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            max_retry=max_retry,
            search_space=search_space,
        )
        self.sampler_cfg, self.pruner_cfg = sampler, pruner
        # A SecretUrl from here on: every log line and message shows it masked.
        self.storage, self.study_name = SecretUrl.optional(storage), study_name
        self.params: dict[str, Any] | None = (
            cast(dict[str, Any], OmegaConf.to_container(params, resolve=True))
            if OmegaConf.is_config(params)
            else params
        )
        self.custom_search_space_path = custom_search_space
        self.check_job_config_path = check_job_config
        self.timeout, self.load_if_exists = timeout, load_if_exists
        # Jobs get the storage URL without its password (it would show in Hydra's override
        # echo and in their saved configs); the password reaches them by environment.
        self.job_storage = self.storage.without_password() if self.storage else None
        self.rdb: RDBStorage | None = None  # the study's storage when it keeps heartbeats
        self.heartbeat: Heartbeat | None = None
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Launcher | None = None

    def _check_settings(self) -> None:
        """Validate the settings and derive the parsed ones.

        Raises:
            SweeperConfigError: naming the setting, its value and the fix.
        """
        try:
            self._parse_settings(**self._settings)
        except (ValueError, TypeError) as exc:
            if isinstance(exc, SweeperConfigError):
                raise
            raise SweeperConfigError(str(exc)) from exc

    def _parse_settings(
        self,
        sampler: Any,
        pruner: Any,
        direction: Any,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        timeout: float | None,
        deadline: float | None,
        fidelity: Any,
        enqueue_trials: Any,
        heartbeat_interval: int,
        grace_period: int,
        max_retry: int,
        search_space: Any,
    ) -> None:
        if search_space:
            raise SweeperConfigError(
                "hydra.sweeper.search_space is the old (hydra-optuna-sweeper < 1.2) format; "
                "write the space as hydra.sweeper.params in Hydra's sweep grammar, "
                "e.g. params: {model.width: choice(16, 32)}"
            )
        for name, node in (("sampler", sampler), ("pruner", pruner)):
            if not OmegaConf.is_dict(node) or "_target_" not in node:
                raise SweeperConfigError(
                    f"hydra.sweeper.{name}={node!r} is not a {name} config; pick one with "
                    f"hydra/sweeper/{name}=<option> (see `python train.py --help`)"
                )
        self.directions = _directions(direction)
        self.n_trials, self.n_jobs = (
            _at_least("n_trials", n_trials, 1),
            _at_least("n_jobs", n_jobs, 1),
        )
        if not 0.0 <= float(max_failure_rate) <= 1.0:
            raise SweeperConfigError(
                f"hydra.sweeper.max_failure_rate={max_failure_rate} must be in [0, 1]"
            )
        self.max_failure_rate = float(max_failure_rate)
        for name, seconds in (("timeout", timeout), ("deadline", deadline)):
            if seconds is not None and seconds <= 0:
                raise SweeperConfigError(
                    f"hydra.sweeper.{name}={seconds} must be > 0 seconds (or null)"
                )
        self.deadline = deadline
        self.fidelity = self._parse_fidelity(fidelity, sampler, pruner)
        self.enqueue_trials = _trial_list(enqueue_trials)
        self.custom_search_space = self._function("custom_search_space")
        self.check_job_config = self._function("check_job_config")
        self.liveness = Liveness(heartbeat_interval, grace_period, max_retry)

    def _parse_fidelity(self, node: Any, sampler: Any, pruner: Any) -> Fidelity | None:
        if node is None:
            return None
        if not isinstance(node, dict):
            raise SweeperConfigError(
                f"hydra.sweeper.fidelity={node!r} must be a mapping such as "
                "{key: trainer.epochs, min: 4, max: 20, eta: 3}"
            )
        fidelity = Fidelity.from_setting(node)
        # Within a budget a run is whole: promotion replaces pruning, so a pruner would
        # judge values no run reports.
        if not str(pruner.get("_target_", "")).endswith("NopPruner"):
            raise SweeperConfigError(
                f"hydra.sweeper.fidelity promotes whole runs between budgets; the pruner "
                f"{pruner.get('_target_')} would never act: add hydra/sweeper/pruner=none"
            )
        if len(self.directions) != 1:
            raise SweeperConfigError(
                "hydra.sweeper.fidelity ranks runs by one objective; a multi-objective study "
                f"(direction={list(self.directions)}) cannot use it"
            )
        if str(sampler.get("_target_", "")).endswith("GridSampler"):
            raise SweeperConfigError(
                "hydra.sweeper.fidelity reruns promoted points, which the grid sampler "
                "counts as grid points; use another sampler"
            )
        return fidelity

    def _function(self, setting: str) -> Any:
        """The function a `hydra.sweeper.<setting>` dotted path names, or None."""
        path = getattr(self, f"{setting}_path")
        if not path:
            return None
        try:
            return get_method(path)
        except Exception as exc:
            raise SweeperConfigError(
                f"hydra.sweeper.{setting}={path} cannot be imported ({first_line(exc)}); "
                "give the dotted path of a function"
            ) from exc

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=_without_storage_password(config, self.storage),
            hydra_context=hydra_context,
            task_function=task_function,
        )

    # --- the sweep ------------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> optuna.Study:
        """Run the study; user errors end the process with a message, not a traceback."""
        try:
            with exit_on_user_error(log):
                self._check_settings()
                return self._sweep(arguments)
        except KeyboardInterrupt:
            log.warning("Interrupted: rerun the same command to continue the study")
            raise SystemExit(130) from None

    def _sweep(self, arguments: list[str]) -> optuna.Study:
        assert self.config is not None and self.launcher is not None
        space = parse_search_space(
            self.params, arguments, config=self.config, group_options=self._group_options
        )
        self._check_space_settings(space)
        self._check_first_job(space)
        if self.storage and (password := self.storage.reveal_password()):
            os.environ[STORAGE_PASSWORD_ENV] = password  # before any launcher process starts
        study, created = self._open_study(space)
        liveness.warn_unowned_running(study, self.storage)
        parent = report.open_parent_run(self.config, study, self.storage, created)
        slots = self._slots()
        log.info(
            "Study %r in %s (%s it): %d of %d trials finished, %d running; sampler %s, "
            "pruner %s, %d at once in worker %s",
            study.study_name,
            self.storage or "memory",
            "created" if created else "joined",
            _finished(study),
            self.n_trials,
            _running(study),
            type(study.sampler).__name__,
            type(study.pruner).__name__,
            slots,
            liveness.worker_name(),
        )
        progress = SweepProgress()
        status = "FINISHED"
        # Started here, where the `finally` below stops it, so no error path leaves it running.
        if self.rdb is not None:
            self.heartbeat = Heartbeat(self.rdb, self.liveness.heartbeat_interval)
        try:
            self._run(study, space, progress, slots, parent.run_id if parent else None)
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        except BaseException:
            status = "FAILED"
            raise
        finally:
            if self.heartbeat is not None:
                self.heartbeat.stop()
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
                    if not self._others_may_fail(study, progress):
                        return
                    # The budget is taken by other workers' trials: wait to see them finish,
                    # or go stale (then this worker runs their retries).
                    time.sleep(min(self.liveness.heartbeat_interval, OTHERS_POLL_S))
                    continue
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
        trial = liveness.ask(study, fixed_distributions=space.distributions)
        # Owned from now on: a RUNNING trial without this attr is an orphan of old versions.
        retried_run = trial.user_attrs.get(RUN_ID_ATTR)  # copied from the trial it retries
        trial.set_user_attr(WORKER_ATTR, liveness.worker_name())
        retry_of = _retried_trial_number(study, trial.number)
        values = {k: trial.params[k] for k in space.distributions}
        overrides = space.to_overrides(values)
        if self.custom_search_space is not None:
            self.custom_search_space(self.config, trial)
            overrides += [
                f"{k}={render_value(v)}" for k, v in trial.params.items() if k not in values
            ]
        run = self._fidelity_run(study, trial)
        if run.budget is not None:
            overrides.append(cast(Fidelity, self.fidelity).override(run.budget))
        shown = " ".join(overrides)
        if self._takes_part():
            link = TrialLink(
                study_name=study.study_name,
                storage=self.job_storage,
                trial_number=trial.number,
                parent_run_id=parent_run_id,
                workers=slots,
                pruner=cast(dict[str, Any], OmegaConf.to_container(self.pruner_cfg, resolve=True)),
                retry_of=retry_of,
                retry_of_run_id=retried_run if retry_of is not None else None,
                budget=run.budget,
                rung=run.rung,
                promoted_from=run.promoted_from,
                promoted_from_run_id=run.promoted_from_run_id,
            )
            overrides.append(link.to_override())
        register_trial(trial)
        self._untold[trial.number] = trial
        where = run.describe()
        if retry_of is not None:
            log.info("Trial %d%s retries trial %d: %s", trial.number, where, retry_of, shown)
            report.tag_retried_run(self.config, retried_run, trial.number)
        else:
            log.info("Trial %d%s: %s", trial.number, where, shown)
        return trial, overrides

    def _fidelity_run(self, study: optuna.Study, trial: optuna.Trial) -> FidelityRun:
        """The rung and budget of a new trial (multi-fidelity), marking a new configuration
        as rung 0; a promotion or a retry brings its own in its user attributes."""
        if self.fidelity is None:
            return FidelityRun()
        if RUNG_ATTR not in trial.user_attrs:
            for key, value in self.fidelity.start_attrs(trial.number).items():
                trial.set_user_attr(key, value)
        rung = self.fidelity.rung_of(trial)
        promoted_from = trial.user_attrs.get(PROMOTED_FROM_ATTR)
        promoted_run = None
        if promoted_from is not None:
            earlier = study.get_trials(deepcopy=False)[int(promoted_from)]
            promoted_run = earlier.user_attrs.get(RUN_ID_ATTR)
        return FidelityRun(
            budget=self.fidelity.budgets[rung],
            rung=rung,
            top=self.fidelity.top,
            promoted_from=None if promoted_from is None else int(promoted_from),
            promoted_from_run_id=promoted_run,
        )

    def _launch(self, trial: optuna.Trial, overrides: Sequence[str]) -> JobReturn:
        assert self.launcher is not None
        try:
            if self.heartbeat is None:
                (result,) = self.launcher.launch([list(overrides)], initial_job_idx=trial.number)
            else:
                with self.heartbeat.beating(trial):
                    (result,) = self.launcher.launch(
                        [list(overrides)], initial_job_idx=trial.number
                    )
            return result
        finally:
            unregister_trial(trial)

    def _tell(
        self, study: optuna.Study, trial: optuna.Trial, result: JobReturn, progress: SweepProgress
    ) -> None:
        outcome = job_outcome(result, len(self.directions))
        self._untold.pop(trial.number, None)
        # A run below the top budget is stored PRUNED with its value at step = budget
        # (hpo/sweep/fidelity.py says why); a top-budget run is COMPLETE as usual.
        step = None
        if self.fidelity is not None and outcome.state == TrialState.COMPLETE:
            rung = self.fidelity.rung_of(trial)
            if rung < self.fidelity.top:
                step = self.fidelity.step(rung)
        if not _record_outcome(study, trial, outcome, step):
            # Another worker saw no heartbeat for longer than grace_period (this worker was
            # stalled or cut off from the storage) and failed the trial; its retry runs the
            # same params. Nothing of this result is written: not the value, the state, the
            # error or the MLflow tag (the stale handler ended the trial's run already).
            log.warning(
                "Trial %d finished %s here, but another worker had failed it as stale while "
                "this one was unreachable (no heartbeat for over %d s); its result is dropped "
                "and its retry runs the same params. Raise hydra.sweeper.grace_period if this "
                "worker is often out of reach that long.",
                trial.number,
                outcome.state.name,
                self.liveness.grace_period,
            )
            return
        if outcome.error:
            progress.errors[trial.number] = outcome.error
        state = TrialState.PRUNED if step is not None else outcome.state
        progress.told[trial.number] = state
        # The MLflow tag says what happened: a lower rung's run finished its whole budget.
        shown = RUNG_DONE if step is not None else outcome.state.name
        report.tag_child_run(self.config, study.study_name, trial.number, shown)
        log.info("Trial %d %s %s", trial.number, shown, describe(outcome))

    # --- policies -------------------------------------------------------------------------

    def _may_start(self, study: optuna.Study, progress: SweepProgress, running: int) -> bool:
        liveness.fail_stale(study)
        # Trials running anywhere (this worker's and others') count against the study's total.
        if _finished(study) + _running(study) >= self.n_trials:
            return False
        if self.timeout is not None and progress.seconds() > self.timeout:
            if running == 0:
                log.info("timeout of %.0f s reached: no new trials", self.timeout)
            return False
        if self._too_many_failures(progress):
            return False
        if self.fidelity is None and self.deadline is None:
            return True
        return self._plan_next_run(study, progress, running)

    def _plan_next_run(self, study: optuna.Study, progress: SweepProgress, running: int) -> bool:
        """Choose what the next `ask` gets, within the deadline: the oldest queued trial,
        else a due promotion (enqueued here, highest rung first), else a new configuration
        at the smallest budget. False when that does not fit before the deadline."""
        trials = study.get_trials(deepcopy=False)
        elapsed = progress.seconds()

        def expected(budget: float | None) -> float | None:
            return deadline.expected_seconds(trials, budget, self._budget_of)

        def fits(budget: float | None) -> bool:
            return deadline.fits(expected(budget), elapsed, self.deadline)

        waiting = [t for t in trials if t.state == TrialState.WAITING]
        if waiting:  # `ask` pops the oldest queued trial (warm start, retry, promotion)
            budget = self._budget_of(waiting[0])
        else:
            if self.fidelity is not None:
                maximize = self.directions[0] == "maximize"
                promotion = self.fidelity.promotion(trials, maximize, fits)
                if promotion is not None:
                    study.enqueue_trial(promotion.params, user_attrs=promotion.user_attrs)
                    return True
            budget = self.fidelity.budgets[0] if self.fidelity is not None else None
        if fits(budget):
            return True
        if running == 0:
            what = f"a run at {self.fidelity.key}={budget}" if self.fidelity else "a trial"
            log.info(
                "deadline of %.4g s: %s takes about %.0f s and %.0f s are left; no new runs",
                self.deadline,
                what,
                expected(budget) or 0.0,
                max(0.0, (self.deadline or 0.0) - elapsed),
            )
        return False

    def _budget_of(self, trial: FrozenTrial) -> float | None:
        if self.fidelity is None:
            return None
        return self.fidelity.budgets[self.fidelity.rung_of(trial)]

    def _others_may_fail(self, study: optuna.Study, progress: SweepProgress) -> bool:
        """True when the study is short of `n_trials` only because of other workers' running
        trials: if one of them dies, this worker should run its retry."""
        if self.heartbeat is None or _finished(study) >= self.n_trials:
            return False
        for limit in (self.timeout, self.deadline):
            if limit is not None and progress.seconds() > limit:
                return False
        if self._too_many_failures(progress) or _running(study) == 0:
            return False
        log.info(
            "%d trial(s) of other workers still running; waiting to see them finish",
            _running(study),
        )
        return True

    def _too_many_failures(self, progress: SweepProgress) -> bool:
        """More failures than `max_failure_rate` tolerates, or `n_trials` in a row.

        Failed trials do not count towards `n_trials` (a retried or replaced trial would
        otherwise eat the budget), so the second rule is what ends a sweep whose every trial
        fails under `max_failure_rate=1.0` (a broken environment, a bug in the task): it
        stops after `n_trials` failures in a row.
        """
        if progress.failures_in_a_row() >= self.n_trials:
            return True
        failed = progress.count(TrialState.FAIL)
        return failed > 0 and failed / len(progress.told) > self.max_failure_rate

    def _check_failures(self, progress: SweepProgress) -> None:
        if not self._too_many_failures(progress):
            return
        failed = [n for n, s in progress.told.items() if s == TrialState.FAIL]
        details = "\n".join(f"  trial {n}: {progress.errors.get(n, '?')}" for n in failed)
        if progress.failures_in_a_row() >= self.n_trials:
            why = f"the last {progress.failures_in_a_row()} in a row (n_trials={self.n_trials})"
        else:
            why = f"more than max_failure_rate={self.max_failure_rate}"
        raise SweepFailedError(
            f"{len(failed)} of {len(progress.told)} trials failed, {why}; the sweep "
            f"stopped:\n{details}\n"
            "Fix the cause, or raise hydra.sweeper.max_failure_rate to tolerate failures."
        )

    # --- set-up helpers -------------------------------------------------------------------

    def _open_study(self, space: SearchSpace) -> tuple[optuna.Study, bool]:
        """The study, and whether this worker created it (exactly one worker does: the
        storage's unique study name decides, also when workers start together)."""
        storage = open_storage(
            self.storage,
            heartbeat_interval=self.liveness.heartbeat_interval,
            grace_period=self.liveness.grace_period,
            on_stale=liveness.stale_trial_callback(self.liveness, self._close_stale_run),
        )
        directions = [StudyDirection[d.upper()] for d in self.directions]
        try:
            study_id = storage.create_new_study(directions, self.study_name)
            name, created = storage.get_study_name_from_id(study_id), True
        except optuna.exceptions.DuplicatedStudyError as exc:
            if not self.load_if_exists:
                raise SweeperConfigError(
                    f"study {self.study_name!r} already exists in {self.storage or 'memory'} and "
                    "hydra.sweeper.load_if_exists=false; pick another hydra.sweeper.study_name, "
                    "or set load_if_exists=true to continue it"
                ) from exc
            name, created = cast(str, self.study_name), False
        study = optuna.load_study(
            study_name=name,
            storage=storage,
            sampler=self._sampler(space, created),
            pruner=instantiate(self.pruner_cfg),
        )
        if [d.name.lower() for d in study.directions] != list(self.directions):
            raise SweeperConfigError(
                f"study {study.study_name!r} in {self.storage or 'memory'} was created with "
                f"directions {[d.name.lower() for d in study.directions]}, not "
                f"{list(self.directions)}; use another hydra.sweeper.study_name or the "
                "original direction"
            )
        self.rdb = storage if isinstance(storage, RDBStorage) else None
        if created and self.enqueue_trials:
            for params in self.enqueue_trials:
                study.enqueue_trial(params, user_attrs={"warm_start": True}, skip_if_exists=True)
            log.info("Enqueued %d warm-start trial(s) to run first", len(self.enqueue_trials))
        return study, created

    def _sampler(self, space: SearchSpace, created: bool) -> optuna.samplers.BaseSampler:
        sampler_kwargs: dict[str, Any] = {}
        if str(self.sampler_cfg.get("_target_", "")).endswith("GridSampler"):
            sampler_kwargs["search_space"] = space.grid()
            size = math.prod(len(v) for v in sampler_kwargs["search_space"].values())
            if size < self.n_trials:
                log.info("grid has %d points: n_trials %d -> %d", size, self.n_trials, size)
                self.n_trials = size
        seed = self.sampler_cfg.get("seed")
        if seed is not None and not created:
            # Workers that join a study draw their own stream: with the study's seed they
            # would all propose the same startup trials. The creator keeps the seed, so a
            # one-worker study is reproducible.
            sampler_kwargs["seed"] = own = _worker_seed(int(seed))
            log.info("sampler seed %d (study seed %d, this worker's own)", own, seed)
        return cast(optuna.samplers.BaseSampler, instantiate(self.sampler_cfg, **sampler_kwargs))

    def _check_space_settings(self, space: SearchSpace) -> None:
        """The fidelity key and the warm-start trials against the parsed space.

        Raises:
            SweeperConfigError: the fidelity key is also swept or fixed by the space, or a
                warm-start trial names a param the space has not, or a value outside it.
        """
        if self.fidelity is not None:
            key = self.fidelity.key
            if key in space.distributions or key in space.fixed:
                raise SweeperConfigError(
                    f"hydra.sweeper.fidelity.key={key} is also in the search space; the "
                    "budget is set by the sweeper for each run: remove it from the params"
                )
        for i, params in enumerate(self.enqueue_trials):
            unknown = sorted(set(params) - set(space.distributions))
            missing = sorted(set(space.distributions) - set(params))
            if unknown:
                raise SweeperConfigError(
                    f"hydra.sweeper.enqueue_trials[{i}] names {unknown}, not sampled params of "
                    f"the space ({sorted(space.distributions)})"
                )
            if missing:
                log.info("enqueue_trials[%d] leaves %s to the sampler", i, missing)
            for key, value in params.items():
                if not _in_distribution(space.distributions[key], value):
                    raise SweeperConfigError(
                        f"hydra.sweeper.enqueue_trials[{i}].{key}={value!r} is outside the "
                        f"space's {space.distributions[key]}"
                    )

    def _check_first_job(self, space: SearchSpace) -> None:
        """Compose the config of a job at the space's first point and run the app's check
        (`check_job_config`, if set) on it, before the study is opened or any trial asked:
        an override that does not compose would fail every trial.

        Raises:
            SweeperConfigError: the overrides do not compose, or the objective names as many
                metrics as `direction` has not.
            UsageError: whatever the app's check raises for a wrong config.
        """
        assert self.config is not None and self.hydra_context is not None
        overrides = space.to_overrides(space.first_point())
        if self.fidelity is not None:  # a wrong fidelity key fails here, before any run
            overrides.append(self.fidelity.override(self.fidelity.budgets[0]))
        try:
            job = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        except (ConfigCompositionException, OmegaConfBaseException) as exc:
            # Hydra names the override; its cause (OmegaConf's error) says why it failed.
            why = first_line(exc)
            if exc.__cause__ is not None:
                why += f": {first_line(exc.__cause__)}"
            raise SweeperConfigError(
                f"the search space does not compose into a job config ({why}); "
                f"overrides: {' '.join(overrides)}"
            ) from exc
        if self.check_job_config is None:
            return  # composing was the whole check
        with read_write(job), open_dict(job):
            del job["hydra"]  # as Hydra hands the config to a job
        objectives = self.check_job_config(job)
        if objectives is not None and len(objectives) != len(self.directions):
            raise SweeperConfigError(
                f"the objective {list(objectives)} has {len(objectives)} metric(s) but "
                f"hydra.sweeper.direction={list(self.directions)} has {len(self.directions)}; "
                "give one direction per metric, e.g. objective=[val/acc,model/params] "
                "hydra.sweeper.direction=[maximize,minimize]"
            )
        log.info("A job config at the space's first point passed %s", self.check_job_config_path)

    def _close_stale_run(self, trial: FrozenTrial) -> None:
        report.close_stale_run(self.config, trial, self.liveness.grace_period)

    def _group_options(self, key: str) -> list[str] | None:
        assert self.hydra_context is not None
        options = self.hydra_context.config_loader.get_group_options(key)
        return list(options) or None

    def _takes_part(self) -> bool:
        """True for apps (like ours) whose config has a node to receive the trial link."""
        assert self.config is not None
        return LINK_KEY in self.config

    def _slots(self) -> int:
        assert self.config is not None
        # Hydra's default launcher runs one job at a time, in this process.
        basic = OmegaConf.select(self.config, "hydra.launcher._target_") == BASIC_LAUNCHER
        if self.n_jobs > 1 and basic:
            log.warning(
                "n_jobs=%d but the basic launcher runs one job at a time in this process; "
                "use hydra/launcher=joblib for parallel trials",
                self.n_jobs,
            )
            return 1
        return self.n_jobs


def _record_outcome(
    study: optuna.Study, trial: optuna.Trial, outcome: Outcome, step: int | None = None
) -> bool:
    """Write a finished job's error and state to its trial; False when the trial had
    already been finished by another worker (then nothing is written).

    With `step` (a multi-fidelity run below the top budget), a complete job's value is
    reported at that step and the trial told PRUNED, which makes it the trial's value.

    The state is read first and every write is guarded as well: another worker may fail the
    trial as stale between the read and a write (Optuna then raises
    `UpdateFinishedTrialError`).
    """
    if _state(study, trial.number) != TrialState.RUNNING:
        return False
    values = outcome.values
    try:
        if outcome.error:
            trial.set_user_attr("error", outcome.error[:2000])
        if step is not None and values is not None:
            trial.report(float(cast(float, values)), step=step)
            _tell_without_stop(study, trial, None, TrialState.PRUNED)
        else:
            _tell_without_stop(study, trial, values, outcome.state if values is None else None)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
        # A ValueError from `tell` is "Cannot tell a FAIL trial" when the state changed
        # since the read; any other one is a bug and must surface.
        if _state(study, trial.number) == TrialState.RUNNING:
            raise
        return False
    return True


def _tell_without_stop(
    study: optuna.Study,
    trial: optuna.Trial,
    values: float | list[float] | None,
    state: TrialState | None,
) -> None:
    """`study.tell`, for a sampler that calls `study.stop()` when it has nothing left.

    The grid sampler does so after the last point's trial, and `stop` raises outside
    `Study.optimize`; the state is stored before (Optuna stores it in a `finally`), and this
    sweeper caps n_trials at the grid's size itself, so the request to stop is dropped.
    """
    try:
        study.tell(trial, values, state=state)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc) or _state(study, trial.number) == TrialState.RUNNING:
            raise


def _requeue(study: optuna.Study, trials: Sequence[Any], why: str) -> None:
    """Mark unfinished trials FAIL and enqueue their params, so a rerun runs them again.

    A trial another worker already finished (failed as stale, and queued for retry by it)
    is left alone.
    """
    for trial in trials:
        number = trial.number
        if _state(study, number) != TrialState.RUNNING:
            continue
        try:
            study.tell(number, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # failed as stale by another worker just now
        if trial.params:
            attrs = {**carried_attrs(trial.user_attrs), "requeued_from": number}
            study.enqueue_trial(dict(trial.params), user_attrs=attrs)
        log.warning("trial %d %s: marked FAIL, its params queued to run again", number, why)


@dataclass(frozen=True)
class FidelityRun:
    """Where a run stands in multi-fidelity (all None without it)."""

    budget: float | None = None
    rung: int | None = None
    top: int | None = None
    promoted_from: int | None = None
    promoted_from_run_id: str | None = None

    def describe(self) -> str:
        if self.rung is None:
            return ""
        since = (
            f", promoted from trial {self.promoted_from}" if self.promoted_from is not None else ""
        )
        return f" (rung {self.rung} of {self.top}{since})"


def _container(node: Any) -> Any:
    """A config node as plain Python (dicts, lists), anything else unchanged."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _trial_list(node: Any) -> list[dict[str, Any]]:
    """`enqueue_trials` as a list of param dicts."""
    if node is None:
        return []
    if not isinstance(node, list) or not all(isinstance(p, dict) for p in node):
        raise SweeperConfigError(
            f"hydra.sweeper.enqueue_trials={node!r} must be a list of param mappings, "
            "e.g. [{optimizer.lr: 0.1, optimizer.weight_decay: 0.0005}]"
        )
    return [{str(k): v for k, v in p.items()} for p in node]


def _in_distribution(dist: optuna.distributions.BaseDistribution, value: Any) -> bool:
    """Whether `value` is a point of `dist` (public fields only)."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return value in dist.choices
    numeric = (optuna.distributions.FloatDistribution, optuna.distributions.IntDistribution)
    if isinstance(dist, numeric):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return bool(dist.low <= value <= dist.high)
    return True


def _without_storage_password(config: DictConfig, storage: SecretUrl | None) -> DictConfig:
    """The config the launcher builds jobs from, with the storage password masked.

    Hydra saves each job's `hydra` node (`.hydra/hydra.yaml`, with the command line's
    overrides) in its output folder; jobs never read the sweeper's storage from there (the
    trial link carries it), so the secret need not be written next to every trial.
    """
    if storage is None or not storage.has_password:
        return config
    clean = copy.deepcopy(config)
    with read_write(clean.hydra), open_dict(clean.hydra):
        clean.hydra.sweeper.storage = str(storage)
        clean.hydra.overrides.hydra = [storage.redact(o) for o in clean.hydra.overrides.hydra]
    return clean


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def _running(study: optuna.Study) -> int:
    return len(liveness.running_trials(study))


def _state(study: optuna.Study, number: int) -> TrialState:
    return study.get_trials(deepcopy=False)[number].state


def _retried_trial_number(study: optuna.Study, number: int) -> int | None:
    """The first trial whose params this one runs again (Optuna's retry callback), or None."""
    frozen = study.get_trials(deepcopy=False)[number]
    with liveness.chosen_experimental():
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)


def _worker_seed(seed: int) -> int:
    entropy = [seed, os.getpid(), time.time_ns() & 0xFFFFFFFF]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


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
        raise SweeperConfigError(
            f"hydra.sweeper.direction={direction} must be minimize, maximize or a list of them"
        )
    return names


def _at_least(name: str, value: int, minimum: int) -> int:
    if not isinstance(value, int) or value < minimum:
        raise SweeperConfigError(f"hydra.sweeper.{name}={value} must be an integer >= {minimum}")
    return value
