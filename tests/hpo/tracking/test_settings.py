"""`conf/tracking/`: the schema's keys and defaults are the settings', the URI a SecretUrl."""

from __future__ import annotations

import dataclasses

from omegaconf import OmegaConf

from hpo.tracking.settings import TrackingConf, TrackingSettings
from hpo.urls import SecretUrl


def test_settings_have_the_schemas_keys_and_defaults() -> None:
    conf = {f.name: getattr(TrackingConf(), f.name) for f in dataclasses.fields(TrackingConf)}
    settings = {
        f.name: getattr(TrackingSettings(), f.name) for f in dataclasses.fields(TrackingSettings)
    }
    assert settings == {**conf, "uri": SecretUrl(conf["uri"])}


def test_the_uri_from_a_config_is_a_secret_url() -> None:
    node = OmegaConf.structured(TrackingConf(uri="http://user:s3cret@host:5000"))
    settings = TrackingSettings.from_config(node)
    assert isinstance(settings.uri, SecretUrl)
    assert settings.uri.reveal() == "http://user:s3cret@host:5000"
    assert "s3cret" not in repr(settings) and "s3cret" not in f"{settings.uri}"


def test_a_plain_string_uri_is_wrapped_at_once() -> None:
    assert TrackingSettings(uri="sqlite:///x.db").uri == SecretUrl("sqlite:///x.db")
