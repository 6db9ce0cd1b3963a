"""Sweep room: the Optuna sweeper behind `hydra/sweeper=optuna`.

- `config`: the sweeper's schema and its sampler/pruner options (dataclasses, ConfigStore).
- `search_space`: Hydra's sweep grammar -> Optuna distributions, as pure functions.
- `sweeper`: the study loop: ask, launch, tell, as small separate steps; one worker of
  possibly many on the same study.
- `liveness`: Optuna's heartbeats for an ask-and-tell sweeper: stale trials of dead
  workers are failed, their MLflow runs ended KILLED, their params retried.
- `progress`: what one sweep invocation has done, and how a finished job is read.
- `trial_link`: the typed link a job gets to reach its trial (and the pruner).
- `storage`: opening an Optuna storage with a clear error.
- `report`: optimization_results.yaml, the study's parent MLflow run, the summary.

May import `hpo.tracking` (through `report`; `sweeper` only names its
`TrackingUnavailableError` to report it as a user error) and the leaf modules of `hpo/`;
never `hpo.retest` nor `hpo.services`. Hydra imports `config` on every start, so it
imports no Optuna.
"""
