"""Training room: the epoch loop, learning-rate schedules, devices, seeding, metric directions.

Plain PyTorch: modules here import torch, rich, the standard library and the plain-PyTorch
`models` package (the loop's flip TTA) and the standard-library leaf `hpo.errors` (the
user-error base), and nothing from hydra, omegaconf, optuna or mlflow
(a test checks it), so the loop can be benchmarked and reused on its own. Other rooms call
into it; it calls no other room. Callers pass an `on_epoch_end` callback to log or report
each epoch.
"""
