"""Settings: flag > QINGGAN_* env var > default, typed casts, validation, redaction."""

from __future__ import annotations

import dataclasses

import pytest

from qinggan.settings import Settings, SettingsError, env_name


def test_defaults_without_flags_or_env() -> None:
    settings = Settings.resolve(environ={})
    assert settings == Settings()
    assert (settings.port, settings.max_text_chars, settings.max_batch_texts) == (7860, 512, 64)
    assert settings.api_key is None and settings.cors_origins == ()


def test_env_overrides_default_and_flag_overrides_env() -> None:
    env = {
        "QINGGAN_PORT": "9000",
        "QINGGAN_MAX_WAIT_MS": "4.5",
        "QINGGAN_CORS_ORIGINS": "https://a.example, https://b.example",
        "QINGGAN_ACCESS_LOG": "yes",
        "QINGGAN_LOG_LEVEL": "DEBUG",
        "QINGGAN_MAX_QUEUE": "",  # empty means unset
    }
    settings = Settings.resolve({"port": 9100, "host": None}, environ=env)
    assert settings.port == 9100  # the flag wins
    assert settings.host == "127.0.0.1"  # a None flag falls through to the default
    assert settings.max_wait_ms == 4.5
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.access_log is True
    assert settings.log_level == "debug"
    assert settings.max_queue == Settings().max_queue


def test_the_server_stops_onnx_runtime_threads_spinning_unless_asked(tiny_bundle) -> None:
    """Off by default for ``serve``; ``QINGGAN_ORT_SPINNING=1`` (or the flag) turns it on,
    and the model the settings load gets exactly that session option."""
    key = "session.intra_op.allow_spinning"

    def spinning(settings: Settings) -> str:
        model = settings.load_model()
        return model.session.get_session_options().get_session_config_entry(key)

    off = Settings.resolve({"model": str(tiny_bundle.path)}, environ={})
    on = Settings.resolve({"model": str(tiny_bundle.path)}, environ={"QINGGAN_ORT_SPINNING": "1"})
    assert (off.ort_spinning, on.ort_spinning) == (False, True)
    assert (spinning(off), spinning(on)) == ("0", "1")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("QINGGAN_PORT", "http", "QINGGAN_PORT must be an integer"),
        ("QINGGAN_MAX_WAIT_MS", "soon", "QINGGAN_MAX_WAIT_MS must be a number"),
        ("QINGGAN_ACCESS_LOG", "maybe", "QINGGAN_ACCESS_LOG must be true or false"),
        ("QINGGAN_MAX_QUEUE", "0", "max_queue must be >= 1"),
        ("QINGGAN_PORT", "70000", "port must be between"),
        ("QINGGAN_LOG_LEVEL", "loud", "log_level must be one of"),
    ],
)
def test_bad_values_name_the_problem(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.resolve(environ={variable: value})


def test_api_key_is_redacted_everywhere() -> None:
    settings = Settings.resolve({"api_key": "s3cret-key"}, environ={})
    assert settings.api_key == "s3cret-key"
    assert "s3cret" not in repr(settings)
    assert settings.redacted()["api_key"] == "***"
    assert Settings().redacted()["api_key"] is None


def test_every_field_has_an_env_var_and_unknown_flags_fail() -> None:
    assert env_name("max_batch_texts") == "QINGGAN_MAX_BATCH_TEXTS"
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings.resolve({"max_cats": 3}, environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]
