"""One user-error base: what derives from it, its exit codes, and how an entry point reports it."""

from __future__ import annotations

import logging

import pytest

from hpo.config_checks import ConfigError
from hpo.errors import (
    DataError,
    RunError,
    UsageError,
    UserError,
    exit_on_user_error,
    first_line,
)
from hpo.retest.best_trial import BestEvalError
from hpo.retest.predict import ImageError
from hpo.services import ServiceError
from hpo.sweep.search_space import SearchSpaceError
from hpo.sweep.storage import StorageUnavailableError
from hpo.sweep.sweeper import SweeperConfigError, SweepFailedError
from hpo.tracking.runs import TrackingUnavailableError
from hpo.training.loop import TrainingDivergedError


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError, 2),
        (SearchSpaceError, 2),
        (SweeperConfigError, 2),
        (BestEvalError, 2),
        (ImageError, 2),
        (DataError, 1),
        (StorageUnavailableError, 1),
        (TrackingUnavailableError, 1),
        (ServiceError, 1),
        (SweepFailedError, 1),
        (TrainingDivergedError, 1),
    ],
)
def test_every_user_error_derives_from_the_base_with_its_exit_code(error, code) -> None:
    assert issubclass(error, UserError)
    assert issubclass(error, UsageError if code == 2 else RunError)
    assert error("x").exit_code == code


def test_a_user_error_becomes_its_message_and_exit_code(caplog) -> None:
    log = logging.getLogger("entry")
    with pytest.raises(SystemExit) as stopped, exit_on_user_error(log):
        raise ConfigError("invalid config:\n  - trainer.epochs=0 is invalid")
    assert stopped.value.code == 2
    assert stopped.value.__cause__ is None and stopped.value.__suppress_context__
    assert "trainer.epochs=0 is invalid" in caplog.text
    with pytest.raises(SystemExit) as stopped, exit_on_user_error(log):
        raise StorageUnavailableError("cannot open the Optuna storage")
    assert stopped.value.code == 1


def test_other_errors_keep_their_traceback() -> None:
    with pytest.raises(KeyError), exit_on_user_error(logging.getLogger("entry")):
        raise KeyError("a bug, not user input")


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (RuntimeError("first\nsecond"), "first"),
        (RuntimeError("\n  \n  real reason  \nmore"), "real reason"),
        (RuntimeError(""), "RuntimeError"),
        (OSError(), "OSError"),
    ],
)
def test_first_line(error, line) -> None:
    assert first_line(error) == line
