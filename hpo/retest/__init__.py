"""Retest room: the only code that reads the official test set.

- `best_trial`: find a study's best trial (or best few, for an ensemble) and what its MLflow
  run recorded (read-only).
- `best_eval`: `make best-eval`: retest that trial (retrained, or averaged with the next
  best) once on the test set, report, register.
- `metrics`: accuracy with its interval, per-class scores, confusion (plain torch).
- `predict`: `make predict`: classify image files with the registered champion.

`grep -rn load_test` shows every reader of the test set: in the package, all of them are
here (the only other one is `bench/time_to_accuracy.py`, which reproduces a published
test-set figure and selects nothing). May import every other room; no room imports this one.
"""
