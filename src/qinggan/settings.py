"""Every option of the HTTP service in one frozen dataclass.

Each field is resolved once, in this order: an explicit value (a CLI flag), then the
environment variable ``QINGGAN_<FIELD NAME IN CAPITALS>``, then the default. Strings from
the environment are cast to the field's type; bad values raise :class:`SettingsError`
naming the variable. The API key never appears in ``repr`` or :meth:`Settings.redacted`.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import QingganError
from .feedback.store import check_target, redact

ENV_PREFIX = "QINGGAN_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
REDACTED = "***"


class SettingsError(QingganError):
    """An option has a value of the wrong type or out of range."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Options of ``qinggan serve``; see docs/api.md for what each one does."""

    model: str | None = None
    variant: str | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    threads: int | None = None
    max_text_chars: int = 512
    max_body_bytes: int = 1_048_576
    max_batch_texts: int = 64
    max_batch_size: int = 32
    max_batch_tokens: int = 8192
    max_wait_ms: float = 2.0
    max_queue: int = 1024
    request_timeout_s: float = 30.0
    read_timeout_s: float = 30.0
    api_key: str | None = field(default=None, repr=False)
    cors_origins: tuple[str, ...] = ()
    log_level: str = "info"
    access_log: bool = False
    # Off for the server: on 2 cores, ONNX Runtime threads busy-waiting between calls take
    # the CPU the event loop needs (bench/findings.md: +24-66% req/s at 16-64 clients).
    ort_spinning: bool = False
    # Corrections store (POST /v1/feedback): a SQLite file or a postgresql:// URL; off
    # when unset, so the service keeps no user text unless asked. A URL may hold a
    # password: repr and redacted() hide it.
    feedback_db: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        problems = []
        positive = (
            "max_text_chars",
            "max_body_bytes",
            "max_batch_texts",
            "max_batch_size",
            "max_batch_tokens",
            "max_queue",
        )
        for name in positive:
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            problems.append(f"threads must be >= 1, got {self.threads}")
        if not 0 <= self.port <= 65535:
            problems.append(f"port must be between 0 and 65535, got {self.port}")
        if self.max_wait_ms < 0:
            problems.append(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        for name in ("request_timeout_s", "read_timeout_s"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.log_level not in LOG_LEVELS:
            problems.append(
                f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}"
            )
        if self.api_key is not None and not self.api_key.strip():
            problems.append("api_key must not be blank (leave it unset to turn auth off)")
        if self.feedback_db is not None:
            try:
                check_target(self.feedback_db)
            except QingganError as exc:
                problems.append(f"feedback_db: {exc}")
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

    def load_model(self) -> Any:
        """The classifier these settings describe (model, variant, threads, batch limits)."""
        from .engine import load

        return load(
            self.model,
            variant=self.variant,
            threads=self.threads,
            batch_size=self.max_batch_size,
            max_batch_tokens=self.max_batch_tokens,
            spinning=self.ort_spinning,
        )

    def redacted(self) -> dict[str, Any]:
        """All options as a dict, safe to log: the API key is replaced by ``***``."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if data["api_key"] is not None:
            data["api_key"] = REDACTED
        data["cors_origins"] = list(self.cors_origins)
        if self.feedback_db is not None:
            data["feedback_db"] = redact(self.feedback_db)
        return data


def env_name(field_name: str) -> str:
    """The environment variable for a setting, e.g. ``max_queue`` -> ``QINGGAN_MAX_QUEUE``."""
    return ENV_PREFIX + field_name.upper()


def env_flag(field_name: str) -> bool | None:
    """The yes/no environment variable of a boolean setting (e.g. ``ort_spinning``):
    ``None`` if unset or blank, else its value, parsed as :meth:`Settings.resolve` does
    (a bad value raises :class:`SettingsError` naming the variable)."""
    variable = env_name(field_name)
    raw = os.environ.get(variable, "").strip()
    return _cast(bool, raw, variable) if raw else None


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
