"""Every option of loading a model and of the HTTP service, and every environment
variable qinggan reads: this module is the one place they are declared and read.

:class:`LoadOptions` is what ``qinggan.load``, ``Classifier`` and ``Ensemble`` share;
:class:`Settings` is ``qinggan serve``. Each ``Settings`` field is resolved once, in this
order: an explicit value (a CLI flag), then the environment variable
``QINGGAN_<FIELD NAME IN CAPITALS>``, then the default. Strings from the environment are
cast to the field's type; bad values raise :class:`SettingsError` naming the variable.
The API key never appears in ``repr`` or :meth:`Settings.redacted`.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import QingganError
from .feedback.store import check_target, redact
from .options import below_min, field_of, option, same_as

if TYPE_CHECKING:
    from .interface import Model

ENV_PREFIX = "QINGGAN_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
VARIANTS = ("int8", "fp32")
LONG_TEXTS = ("window", "truncate")
# Read whole: on the shared test reviews over the limit, windows are as accurate as cutting
# for every built-in (bench/longtext.py, docs/model.md "Long texts").
DEFAULT_LONG_TEXTS = "window"
REDACTED = "***"
CHECKPOINT_EVERY_S = 1.0  # how often file scoring saves its checkpoint (0: every chunk)


class SettingsError(QingganError):
    """An option has a value of the wrong type or out of range."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LoadOptions:
    """How to load and run a model: what ``qinggan.load``, ``Classifier`` and ``Ensemble``
    share. A field whose ``Settings`` counterpart has another name says so (``setting``);
    ``Settings.load_options`` maps the served ones onto this."""

    variant: str | None = option(
        None, "Model variant to run (default: the bundle's).", choices=VARIANTS
    )
    threads: int | None = option(None, "ONNX Runtime threads (default: all cores).", min=1)
    truncate: bool = option(
        True,
        "Take texts over the model's token limit, read as --long-texts says "
        "(--no-truncate: fail on them).",
    )
    verify: bool = option(True, "Check the sha256 of every file the chosen variant reads.")
    batch_size: int = option(32, "Most texts per model batch.", setting="max_batch_size", min=1)
    max_batch_tokens: int = option(8192, "Most padded tokens per model batch.", min=1)
    spinning: bool | None = option(
        None,
        "Let idle ONNX Runtime threads busy-wait: faster for one client, slower under load "
        "on small CPUs.",
        setting="ort_spinning",
    )  # None: $QINGGAN_ORT_SPINNING if set, else ONNX Runtime's default (on)
    long_texts: str | None = option(
        None,
        "Texts over the model's token limit: window (read whole, in overlapping windows whose "
        "answers are aggregated) or truncate (cut). Default: $QINGGAN_LONG_TEXTS, else window.",
        choices=LONG_TEXTS,
    )  # None: env_long_texts()

    def __post_init__(self) -> None:
        problems = below_min(self)
        for name in ("variant", "long_texts"):
            allowed, value = field_of(LoadOptions, name).metadata["choices"], getattr(self, name)
            if value is not None and value not in allowed:
                problems.append(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if problems:
            raise SettingsError("invalid load options: " + "; ".join(problems))


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Options of ``qinggan serve``; see docs/api.md for what each one does."""

    model: str | None = option(
        None,
        "Bundle directory or built-in model name (accurate, balanced, fast, ngram). "
        "Default: $QINGGAN_MODEL, else the built-in default.",
        short="-m",
    )
    variant: str | None = same_as(LoadOptions, "variant")
    host: str = option("127.0.0.1", "Address to bind.")
    port: int = option(7860, "Port.")
    threads: int | None = same_as(LoadOptions, "threads")
    max_text_chars: int = option(512, "Longest text in characters (longer: 413).", min=1)
    max_body_bytes: int = option(1_048_576, "Largest request body in bytes (larger: 413).", min=1)
    max_batch_texts: int = option(64, "Most texts per /v1/analyze request.", min=1)
    max_batch_size: int = same_as(LoadOptions, "batch_size")
    max_batch_tokens: int = same_as(LoadOptions, "max_batch_tokens")
    max_wait_ms: float = option(2.0, "Longest wait to fill a batch, in ms.", min=0)
    max_queue: int = option(1024, "Most queued texts before 503.", min=1)
    request_timeout_s: float = option(
        30.0, "Seconds before a queued request gets 504.", flag="--request-timeout"
    )
    read_timeout_s: float = option(
        30.0, "Seconds a client may stall mid-request before 408.", flag="--read-timeout"
    )
    api_key: str | None = option(
        None, "Require this key on the API (prefer the env var QINGGAN_API_KEY).", secret=True
    )
    cors_origins: tuple[str, ...] = option(
        default_factory=tuple, help="Comma-separated origins allowed by CORS (default: none)."
    )
    log_level: str = option("info", "Log level.", choices=LOG_LEVELS)
    access_log: bool = option(False, "Log every request.")
    # Off for the server: on 2 cores, ONNX Runtime threads busy-waiting between calls take
    # the CPU the event loop needs (bench/findings.md: +24-66% req/s at 16-64 clients).
    ort_spinning: bool = same_as(LoadOptions, "spinning", False)
    long_texts: str | None = same_as(LoadOptions, "long_texts")
    # Off by default: the service keeps no user text unless asked. A URL may hold a
    # password, so the value stays out of repr and is redacted in logs.
    feedback_db: str | None = option(
        None,
        "Store corrections (POST /v1/feedback) in this SQLite file or postgresql:// URL "
        "(default: off).",
        secret=True,
    )

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise SettingsError("invalid settings: " + "; ".join(problems))

    @classmethod
    def resolve(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Settings from ``overrides`` (``None`` ignored), then env vars, then defaults."""
        environ = os.environ if environ is None else environ
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in overrides:
                values[f.name] = _normalise(f.name, overrides[f.name])
                continue
            raw = environ.get(env_name(f.name))
            if f.name == "api_key" and raw is not None and not raw.strip():
                # Fail closed: a set-but-blank key (an empty secret) must not turn auth off.
                raise SettingsError(
                    f"{env_name(f.name)} is set but blank; set a key, or unset it to turn auth off"
                )
            if raw is not None and raw.strip() != "":
                values[f.name] = _cast(hints[f.name], raw.strip(), env_name(f.name))
        return cls(**values)

    def load_options(self) -> LoadOptions:
        """The :class:`LoadOptions` these settings serve with (the rest keep defaults)."""
        served = {f.name for f in dataclasses.fields(self)}
        values = {}
        for f in dataclasses.fields(LoadOptions):
            name = f.metadata.get("setting") or f.name
            if name in served:
                values[f.name] = getattr(self, name)
        return LoadOptions(**values)

    def load_model(self) -> Model:
        """The classifier these settings describe (model, variant, threads, batch limits)."""
        from .engine import load_with

        return load_with(self.model, self.load_options())

    def redacted(self) -> dict[str, Any]:
        """All options as a dict, safe to log: the API key is replaced by ``***``."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if data["api_key"] is not None:
            data["api_key"] = REDACTED
        data["cors_origins"] = list(self.cors_origins)
        if self.feedback_db is not None:
            data["feedback_db"] = redact(self.feedback_db)
        return data


def _problems(s: Settings) -> list[str]:
    """What is wrong with ``s``, one line per problem."""
    problems = below_min(s)
    if not 0 <= s.port <= 65535:
        problems.append(f"port must be between 0 and 65535, got {s.port}")
    for name in ("request_timeout_s", "read_timeout_s"):
        if not getattr(s, name) > 0:
            problems.append(f"{name} must be > 0, got {getattr(s, name)}")
    for name in ("log_level", "variant", "long_texts"):
        allowed = field_of(Settings, name).metadata["choices"]
        value = getattr(s, name)
        if value is not None and value not in allowed:
            problems.append(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    if s.api_key is not None and not s.api_key.strip():
        problems.append("api_key must not be blank (leave it unset to turn auth off)")
    if s.feedback_db is not None:
        try:
            check_target(s.feedback_db)
        except QingganError as exc:
            problems.append(f"feedback_db: {exc}")
    return problems


def env_name(field_name: str) -> str:
    """The environment variable for a setting, e.g. ``max_queue`` -> ``QINGGAN_MAX_QUEUE``."""
    return ENV_PREFIX + field_name.upper()


def env_flag(field_name: str) -> bool | None:
    """The yes/no environment variable of a boolean setting (e.g. ``ort_spinning``):
    ``None`` if unset or blank, else its value, parsed as :meth:`Settings.resolve` does
    (a bad value raises :class:`SettingsError` naming the variable)."""
    variable = env_name(field_name)
    raw = os.environ.get(variable, "").strip()
    return bool(_cast(bool, raw, variable)) if raw else None


def env_model() -> str | None:
    """``$QINGGAN_MODEL``: the model to load when none is named (``None``: unset or blank)."""
    return os.environ.get(env_name("model"), "").strip() or None


def env_long_texts() -> str:
    """``$QINGGAN_LONG_TEXTS`` (``window`` or ``truncate``), else :data:`DEFAULT_LONG_TEXTS`:
    how ``qinggan.load`` reads texts over the model's token limit when not told."""
    variable = env_name("long_texts")
    raw = os.environ.get(variable, "").strip().lower()
    if raw and raw not in LONG_TEXTS:
        raise SettingsError(f"{variable} must be one of {', '.join(LONG_TEXTS)}, got {raw!r}")
    return raw or DEFAULT_LONG_TEXTS


def checkpoint_seconds() -> float:
    """``$QINGGAN_CHECKPOINT_SECONDS``: how often file scoring saves its checkpoint
    (default :data:`CHECKPOINT_EVERY_S`); not a number raises :class:`QingganError`."""
    variable = env_name("checkpoint_seconds")
    raw = os.environ.get(variable, "")
    try:
        return float(raw) if raw else CHECKPOINT_EVERY_S
    except ValueError:
        raise QingganError(f"${variable} must be a number of seconds, got {raw!r}") from None


def _normalise(name: str, value: Any) -> Any:
    if name == "cors_origins" and isinstance(value, str):
        return _split(value)
    if name == "cors_origins":
        return tuple(value)
    if name == "log_level" and isinstance(value, str):
        return value.lower()
    return value


def _split(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _to_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


_CASTS: dict[Any, Callable[[str], Any]] = {
    int: int,
    float: float,
    bool: _to_bool,
    str: str,
    tuple[str, ...]: _split,
}


def _cast(hint: Any, raw: str, variable: str) -> Any:
    """Turn an environment string into ``hint`` (``X | None`` means ``X``)."""
    args = typing.get_args(hint)
    if type(None) in args:
        hint = next(a for a in args if a is not type(None))
    cast = _CASTS[hint]
    try:
        value = cast(raw)
    except ValueError:
        kind = {int: "an integer", float: "a number", bool: "true or false"}.get(hint, "valid")
        raise SettingsError(f"{variable} must be {kind}, got {raw!r}") from None
    return value.lower() if variable == env_name("log_level") else value
