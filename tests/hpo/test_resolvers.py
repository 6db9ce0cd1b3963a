"""The resolvers the YAML config uses: a study's name carries its data unless it is the real one."""

from __future__ import annotations

import pytest

from hpo.resolvers import study_name


@pytest.mark.parametrize(
    ("target", "name"),
    [
        ("data.FashionMNISTData", "fmnist-quick"),
        ("data.SyntheticData", "fmnist-quick-synthetic"),
        ("mypkg.data.CIFARData", "fmnist-quick-cifar"),
        ("mypkg.Data", "fmnist-quick-data"),
    ],
)
def test_study_name(target: str, name: str) -> None:
    assert study_name("fmnist-quick", target) == name
