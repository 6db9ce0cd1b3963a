"""Where the project lives on disk, so defaults are absolute paths.

Hydra may change the working directory of a job; defaults such as the SQLite tracking
store and the data cache are anchored to the project folder instead, so every run of a
sweep writes to the same database wherever it runs.
"""

from __future__ import annotations

from pathlib import Path

# The project is installed editable from its checkout (see README), so the package's
# parent folder is the checkout.
PROJECT_ROOT: Path = Path(__file__).resolve().parents[1]
