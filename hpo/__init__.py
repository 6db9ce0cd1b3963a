"""The search, in four rooms, plus a few composition helpers for `train.py`.

- `hpo.training`: the plain-PyTorch training loop (no Hydra, OmegaConf, Optuna or MLflow).
- `hpo.tracking`: everything MLflow; the only package that imports it.
- `hpo.sweep`: the Optuna sweeper behind `hydra/sweeper=optuna`, and the trial link a job
  uses to report to it.
- `hpo.retest`: the best trial's one pass over the test set, and `predict`.

Arrows run one way: training <- tracking <- sweep <- retest (each may import the rooms to
its left, never to its right). The modules directly in `hpo/` turn a composed config into
objects (`builders`, `config_checks`, `schema`) for the entry points, or are leaves every
room may use (`errors`: the one user-error base, `paths`, `resolvers`, `urls`: URLs shown
without their password).

`hpo.services` stands apart: `make services` (PostgreSQL and an MLflow server for many
workers); it imports none of the rooms, and none imports it.

This file imports nothing: Hydra imports the sweeper shim, and so this package, on every
start, and `hpo.training` must stay importable without the other libraries.
"""
