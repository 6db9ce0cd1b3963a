"""Tracking room: everything MLflow. The only package of the project that imports mlflow.

- `runs`: open, nest, find and end runs (a study's parent run, a trial's child run).
- `recording`: what a training run logs: config, tags, per-epoch metrics, weights, figures.
- `figures`: the matplotlib figures of a run (learning curves, predictions, confusion).
- `registry`: the Model Registry and its `champion` alias.
- `ui`: direct links into the MLflow UI (`make ui` prints one first).

May import `hpo.training` (for the types of a finished fit), `data`, `models` and the leaf
modules `hpo.paths` and `hpo.schema` (`ui` composes conf/); never `hpo.sweep` or `hpo.retest`.
"""
