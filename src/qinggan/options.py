"""Declaring an option once: a dataclass field whose metadata carries its help text,
allowed values and command-line flag.

Option dataclasses (``settings.Settings``, ``settings.LoadOptions``, the ``convert`` and
``train`` configs) declare fields with :func:`option`; the CLI builds its typer options
from that metadata (``cli.app.dataclass_options``), so no default, help text or choice
list is typed twice.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",  # noqa: A002 - the name typer and click use
    *,
    choices: tuple[str, ...] | None = None,
    flag: str | None = None,
    short: str | None = None,
    secret: bool = False,
    default_factory: Any = dataclasses.MISSING,
    env: bool = True,
    setting: str | None = None,
    min: float | None = None,  # noqa: A002 - the name typer and click use
) -> Any:
    """A dataclass field with CLI metadata.

    ``help`` is the one help text; ``choices`` the allowed values (the CLI rejects others
    with exit 2); ``flag`` overrides the derived ``--field-name``; ``short`` adds e.g.
    ``-m``; ``secret`` keeps the value out of ``repr``; ``env`` says whether the field has
    a ``QINGGAN_*`` environment variable (only where the dataclass reads the environment);
    ``setting`` names the ``Settings`` field a ``LoadOptions`` field is served as, where
    the names differ; ``min`` is the smallest allowed value (checked by the CLI, exit 2,
    and by the dataclass: see :func:`below_min`).
    """
    metadata = {
        "help": help,
        "choices": choices,
        "flag": flag,
        "short": short,
        "env": env,
        "setting": setting,
        "min": min,
    }
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(
            default_factory=default_factory, metadata=metadata, repr=not secret
        )
    return dataclasses.field(default=default, metadata=metadata, repr=not secret)


def same_as(cls: type, name: str, default: Any = dataclasses.MISSING, **changes: Any) -> Any:
    """A field declared like field ``name`` of ``cls`` (same help, choices, default), so a
    second dataclass that shares an option does not type it again; ``changes`` override
    single metadata entries (e.g. ``flag``)."""
    source = field_of(cls, name)
    meta = {k: v for k, v in source.metadata.items() if k != "setting"}
    meta.update(changes)
    value = source.default if default is dataclasses.MISSING else default
    return option(value, **meta)


def below_min(obj: object) -> list[str]:
    """One line per field of dataclass instance ``obj`` that is under its declared ``min``
    (``None`` values are unset, not checked)."""
    problems = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        low, value = f.metadata.get("min"), getattr(obj, f.name)
        if low is not None and value is not None and value < low:
            problems.append(f"{f.name} must be >= {low}, got {value}")
    return problems


def help_of(cls: type, name: str) -> str:
    """The help text declared for field ``name`` of dataclass ``cls``."""
    return str(field_of(cls, name).metadata.get("help", ""))


def choices_of(cls: type, name: str) -> tuple[str, ...] | None:
    """The allowed values declared for field ``name`` of dataclass ``cls``, if any."""
    choices = field_of(cls, name).metadata.get("choices")
    return tuple(choices) if choices else None


def flag_of(cls: type, name: str) -> str:
    """The long command-line flag of field ``name``: declared, or ``--field-name``."""
    declared = field_of(cls, name).metadata.get("flag")
    return str(declared) if declared else "--" + name.replace("_", "-")


def default_of(cls: type, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls``."""
    f = field_of(cls, name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def field_of(cls: type, name: str) -> dataclasses.Field[Any]:
    """The dataclass field ``name`` of ``cls`` (``KeyError`` naming it if absent)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no option {name!r}")
