"""Declaring an option once: a dataclass field whose metadata carries its help text,
allowed values and command-line flag.

Option dataclasses (``settings.Settings``, ``engine.LoadOptions``, ``convert`` and
``train`` configs) declare fields with :func:`option`; the CLI builds its typer options
from that metadata, so no default, help text or choice list is typed twice.
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
) -> Any:
    """A dataclass field with CLI metadata.

    ``help`` is the one help text; ``choices`` the allowed values (the CLI rejects others
    with exit 2); ``flag`` overrides the derived ``--field-name``; ``short`` adds e.g.
    ``-m``; ``secret`` keeps the value out of ``repr``; ``env`` says whether the field has
    a ``QINGGAN_*`` environment variable (only where the dataclass reads the environment).
    """
    metadata = {"help": help, "choices": choices, "flag": flag, "short": short, "env": env}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(
            default_factory=default_factory, metadata=metadata, repr=not secret
        )
    return dataclasses.field(default=default, metadata=metadata, repr=not secret)


def help_of(cls: type, name: str) -> str:
    """The help text declared for field ``name`` of dataclass ``cls``."""
    return str(_field(cls, name).metadata.get("help", ""))


def choices_of(cls: type, name: str) -> tuple[str, ...] | None:
    """The allowed values declared for field ``name`` of dataclass ``cls``, if any."""
    choices = _field(cls, name).metadata.get("choices")
    return tuple(choices) if choices else None


def _field(cls: type, name: str) -> dataclasses.Field[Any]:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no option {name!r}")
