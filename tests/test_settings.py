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


def test_the_readme_table_lists_every_setting_with_its_default() -> None:
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("| variable | default | meaning |", 1)[1].split("\n\n", 1)[0]
    documented: dict[str, str] = {}
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        names = [n.strip(" `") for n in cells[0].split("/")]
        defaults = [d.strip(" `") for d in cells[1].split(" / ")]
        for i, name in enumerate(names):
            documented[name] = defaults[i] if len(defaults) == len(names) else cells[1]
    fields = {env_name(f.name): f for f in dataclasses.fields(Settings)}
    assert set(documented) == set(fields)
    for variable, text in documented.items():
        default = getattr(Settings(), fields[variable].name)
        if isinstance(default, bool):
            assert ("on" if default else "off") in text, variable
        elif isinstance(default, int | float) or isinstance(default, str):
            shown = f"{default:g}" if isinstance(default, float) else str(default)
            assert text == shown, (variable, text, shown)


def test_load_options_are_declared_once_and_served_by_settings() -> None:
    """Every LoadOptions field but truncate and verify is a serve setting with the same
    help; Settings.load_options maps them back, so a new field is added in one place."""
    from qinggan.options import default_of, field_of, help_of
    from qinggan.settings import LoadOptions

    served = {}
    for f in dataclasses.fields(LoadOptions):
        name = f.metadata["setting"] or f.name
        if f.name not in ("truncate", "verify"):
            assert help_of(Settings, name) == help_of(LoadOptions, f.name), name
            served[f.name] = name
            if name != "ort_spinning":  # off for the server, ONNX Runtime's default in process
                assert default_of(Settings, name) == default_of(LoadOptions, f.name), name
    assert field_of(LoadOptions, "batch_size").default == 32
    settings = Settings(variant="fp32", threads=3, max_batch_size=7, max_batch_tokens=99)
    options = settings.load_options()
    assert {k: getattr(options, k) for k in served} == {
        k: getattr(settings, v) for k, v in served.items()
    }
    assert options.truncate and options.verify


def test_load_options_reject_bad_values() -> None:
    from qinggan.settings import LoadOptions

    with pytest.raises(SettingsError, match="threads must be >= 1"):
        LoadOptions(threads=0)
    with pytest.raises(SettingsError, match="variant must be one of int8, fp32"):
        LoadOptions(variant="int4")
