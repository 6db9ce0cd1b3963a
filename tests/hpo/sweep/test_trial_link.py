"""The trial link: built by the sweeper, carried as one override, read back by the job."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from hpo.sweep.trial_link import LINK_KEY, TrialLink

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
