"""The trial link: built by the sweeper, carried as one override, read back by the job."""

from __future__ import annotations

import optuna
import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError
from optuna.distributions import FloatDistribution

from hpo.sweep import trial_link
from hpo.sweep.liveness import RUN_ID_ATTR
from hpo.sweep.trial_link import LINK_KEY, TrialLink, TrialPruned, TrialReporter
from hpo.urls import STORAGE_PASSWORD_ENV, SecretUrl

LINK = TrialLink(
    study_name="it's a study",
    storage="sqlite:////tmp/x/optuna.db",
    trial_number=7,
    parent_run_id="abc123",
    workers=2,
    pruner={"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 5, "n_warmup_steps": 1},
)


def test_the_override_composes_back_to_the_same_link(compose_cfg) -> None:
    override = LINK.to_override()
    assert TrialLink.is_override(override) and override.startswith(f"{LINK_KEY}=")
    cfg = compose_cfg(override)
    assert TrialLink.from_config(cfg) == LINK


def test_a_plain_run_has_no_link(compose_cfg) -> None:
    assert TrialLink.from_config(compose_cfg()) is None
    assert not TrialLink.is_override("hpo_extra=1")


@pytest.mark.parametrize(
    ("node", "error"),
    [
        ({"study_name": "s", "storage": None, "trial_number": "x"}, ValidationError),
        ({"study_name": "s", "storage": None, "trial_number": 1, "worker": 2}, ConfigKeyError),
    ],
)
def test_a_malformed_link_is_rejected(node, error) -> None:
    with pytest.raises(error):
        TrialLink.from_config(OmegaConf.create({LINK_KEY: node}))


def test_run_name_sorts_trials_in_order() -> None:
    names = [TrialLink("s", None, n).run_name for n in (2, 10, 100)]
    assert names == sorted(names) == ["s-trial-0002", "s-trial-0010", "s-trial-0100"]


def test_a_job_in_another_process_reports_through_the_storage(tmp_path) -> None:
    # Not registered in this process: the reporter opens the study's storage, finds the
    # trial by number and reports to it, as a joblib or submitit job does.
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="far", storage=url, direction="maximize")
    trial = study.ask({"x": FloatDistribution(0.0, 1.0)})
    link = TrialLink(
        study_name="far",
        storage=url,
        trial_number=trial.number,
        pruner={"_target_": "optuna.pruners.ThresholdPruner", "lower": 0.5},
    )
    reporter = TrialReporter(link)
    reporter.record_run("run-123")
    reporter.report(1, 0.9)
    with pytest.raises(TrialPruned, match=r"pruned at epoch 2 with value 0\.1000"):
        reporter.report(2, 0.1)  # the link's pruner, rebuilt in the job, says so
    stored = optuna.load_study(study_name="far", storage=url).trials[trial.number]
    assert stored.intermediate_values == {1: 0.9, 2: 0.1}
    assert stored.user_attrs[RUN_ID_ATTR] == "run-123"


def test_a_multi_fidelity_run_is_tagged_and_reports_nothing_per_epoch(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="mf", storage=url, direction="maximize")
    trial = study.ask({"x": FloatDistribution(0.0, 1.0)})
    link = TrialLink(
        study_name="mf",
        storage=url,
        trial_number=trial.number,
        pruner={"_target_": "optuna.pruners.ThresholdPruner", "lower": 0.5},
        budget=7,
        rung=1,
        promoted_from=3,
        promoted_from_run_id="run-3",
    )
    assert link.tags == {
        "study_name": "mf",
        "trial_number": str(trial.number),
        "fidelity_rung": "1",
        "fidelity_budget": "7",
        "promoted_from_trial": "3",
        "promoted_from_run_id": "run-3",
    }
    TrialReporter(link).report(1, 0.1)  # a pruner would stop this value; a rung run goes on
    assert optuna.load_study(study_name="mf", storage=url).trials[0].intermediate_values == {}


class _OpenedError(Exception):
    """Stands for the connection a test does not make."""


def test_a_job_gets_the_storage_password_from_the_environment(tmp_path, monkeypatch) -> None:
    # The link holds the URL without its password; the sweeper put that in the environment.
    opened = []

    def open_storage(url: SecretUrl) -> None:
        opened.append(url)
        raise _OpenedError

    monkeypatch.setattr(trial_link, "open_storage", open_storage)
    monkeypatch.setenv(STORAGE_PASSWORD_ENV, "s3cret")
    link = TrialLink("s", "postgresql+psycopg://fmnist@db:5433/optuna", 0)
    with pytest.raises(_OpenedError):
        TrialReporter(link)
    (url,) = opened
    assert url.reveal() == "postgresql+psycopg://fmnist:s3cret@db:5433/optuna"
