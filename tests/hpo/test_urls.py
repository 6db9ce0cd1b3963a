"""URLs whose password never shows: SecretUrl, masking URLs in text, a job's storage URL."""

from __future__ import annotations

import json
import logging
import pickle

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import UnsupportedValueType

from hpo.urls import STORAGE_PASSWORD_ENV, SecretUrl, job_storage, mask_urls

PG = "postgresql+psycopg://fmnist:s3cret@db.example:5433/optuna"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (PG, "postgresql+psycopg://fmnist:***@db.example:5433/optuna"),
        ("http://user:pa%40ss@127.0.0.1:5000/", "http://user:***@127.0.0.1:5000/"),
        (
            "postgresql://u@h/db?password=s3cret&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        (
            "postgresql+psycopg://fmnist@127.0.0.1:5433/optuna",
            "postgresql+psycopg://fmnist@127.0.0.1:5433/optuna",
        ),
        ("sqlite:////abs/optuna.db", "sqlite:////abs/optuna.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("", ""),
    ],
)
def test_every_way_of_showing_a_url_masks_its_password(url: str, shown: str) -> None:
    secret = SecretUrl(url)
    assert str(secret) == shown
    assert f"{secret}" == f"{secret:s}" == "%s" % secret == shown  # noqa: UP031
    assert repr(secret) == f"SecretUrl({shown!r})"
    assert f"{[secret]}" == f"[SecretUrl({shown!r})]"  # inside containers too
    assert secret.reveal() == url  # only the connecting client asks for this


def test_a_log_line_shows_the_url_masked(caplog) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("storage %s, %r", SecretUrl(PG), SecretUrl(PG))
    assert "fmnist:***@db.example" in caplog.text and "s3cret" not in caplog.text


def test_serializers_refuse_a_secret_url_rather_than_write_it() -> None:
    with pytest.raises(TypeError):
        json.dumps({"storage": SecretUrl(PG)})
    with pytest.raises(UnsupportedValueType):
        OmegaConf.create({"storage": SecretUrl(PG)})


def test_a_secret_url_survives_copies_between_processes() -> None:
    # A launcher may pickle what a job gets; the connecting side still has the secret.
    again = pickle.loads(pickle.dumps(SecretUrl(PG)))
    assert again == SecretUrl(PG) and again.reveal() == PG and hash(again) == hash(SecretUrl(PG))
    assert SecretUrl(SecretUrl(PG)) == SecretUrl(PG) and SecretUrl(PG) != PG


@pytest.mark.parametrize(
    ("url", "password", "without"),
    [
        (PG, "s3cret", "postgresql+psycopg://fmnist@db.example:5433/optuna"),
        ("http://user:pa%40ss@127.0.0.1:5000/", "pa@ss", "http://user@127.0.0.1:5000/"),
        (
            "postgresql://u@h/db?password=s3cret&sslmode=require",
            "s3cret",
            "postgresql://u@h/db?sslmode=require",
        ),
        ("postgresql://u@h/db", None, "postgresql://u@h/db"),
        ("sqlite:///optuna.db", None, "sqlite:///optuna.db"),
    ],
)
def test_password_and_url_without_it(url: str, password: str | None, without: str) -> None:
    secret = SecretUrl(url)
    assert secret.reveal_password() == password
    assert secret.has_password == (password is not None)
    assert secret.without_password() == without


def test_with_password_encodes_it() -> None:
    url = SecretUrl("postgresql://fmnist@h:5433/db").with_password("p@ss:w/rd")
    assert url.reveal() == "postgresql://fmnist:p%40ss%3Aw%2Frd@h:5433/db"
    assert url.reveal_password() == "p@ss:w/rd"
    assert str(url) == "postgresql://fmnist:***@h:5433/db"


def test_redact_takes_the_password_out_of_any_text() -> None:
    url = SecretUrl("http://user:pa%40ss@127.0.0.1:5000")
    text = (
        "API request to http://user:pa%40ss@127.0.0.1:5000/api failed; "
        "auth pa@ss rejected; raw pa%40ss"
    )
    assert url.redact(text) == (
        "API request to http://user:***@127.0.0.1:5000/api failed; auth *** rejected; raw ***"
    )
    assert SecretUrl("sqlite:///x.db").redact("nothing secret") == "nothing secret"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "tracking.uri=http://u:pw@h:5000 model.width=8",
            "tracking.uri=http://u:***@h:5000 model.width=8",
        ),
        (
            "HTTPError('http://u:pw@h:5000/api', \"x\") and postgresql://a:b@c/d.",
            "HTTPError('http://u:***@h:5000/api', \"x\") and postgresql://a:***@c/d.",
        ),
        ("no url here: a=b", "no url here: a=b"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ],
)
def test_mask_urls_in_text(text: str, masked: str) -> None:
    assert mask_urls(text) == masked


def test_a_job_gets_the_storage_password_back_from_the_environment(monkeypatch) -> None:
    link = "postgresql+psycopg://fmnist@db:5433/optuna"
    monkeypatch.delenv(STORAGE_PASSWORD_ENV, raising=False)
    assert job_storage(link).reveal() == link  # none set: libpq's PGPASSFILE may have it
    monkeypatch.setenv(STORAGE_PASSWORD_ENV, "p@ss")
    assert job_storage(link).reveal() == "postgresql+psycopg://fmnist:p%40ss@db:5433/optuna"
    assert str(job_storage(link)) == "postgresql+psycopg://fmnist:***@db:5433/optuna"
    # A URL with its own password, or without a user, is left as it is.
    assert job_storage(PG).reveal() == PG
    assert job_storage("sqlite:///optuna.db").reveal() == "sqlite:///optuna.db"
