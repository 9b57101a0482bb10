"""The ``qinggan`` typer application and the options several commands share.

Options declared once on a dataclass (``settings.Settings``, ``settings.LoadOptions``,
train and convert configs) become typer options here: :func:`typer_option` makes one,
:func:`dataclass_options` gives a command one per field, so a flag's help, default and
allowed values are never typed twice.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import typing
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal, TypeVar

import typer

from .. import __version__
from ..options import default_of, field_of, flag_of
from ..settings import LoadOptions, Settings

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="qinggan",
    help="情感 qinggan: fast, offline Chinese sentiment analysis on the CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"qinggan {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """情感 qinggan: fast, offline Chinese sentiment analysis on the CPU."""


def _plain_type(hint: Any) -> Any:
    """The type a flag parses: ``X | None`` is ``X``; a tuple of strings is one
    comma-separated string."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if type(None) in typing.get_args(hint) and len(args) == 1:
        hint = args[0]
    return str if typing.get_origin(hint) is tuple else hint


def typer_option(cls: type, name: str, *, unset: bool = False) -> tuple[Any, Any, Any]:
    """Field ``name`` of dataclass ``cls`` as ``(annotation, default, typer.Option)``.

    With ``unset`` the flag defaults to ``None`` (the dataclass resolves env vars and
    defaults itself) and the declared default is shown in the help instead.
    """
    hint = _plain_type(typing.get_type_hints(cls)[name])
    meta = field_of(cls, name).metadata
    flag = flag_of(cls, name)
    default = default_of(cls, name)
    default = None if default is dataclasses.MISSING else default
    decls = [f"{flag}/--no-{flag[2:]}" if hint is bool else flag]
    if meta.get("short"):
        decls.append(meta["short"])
    if meta.get("choices"):  # the framework checks them: a bad value exits 2 and lists them
        hint = Literal[tuple(meta["choices"])]
    help_text = str(meta.get("help", ""))
    if unset and default not in (None, ()):
        shown = ("on" if default else "off") if hint is bool else default
        help_text += f" [default: {shown}]"
    info = typer.Option(
        *decls, help=help_text, show_default=not unset, case_sensitive=False, min=meta.get("min")
    )
    if unset or default is None:
        return hint | None, None, info
    return hint, default, info


def dataclass_options(
    cls: type, names: Iterable[str] | None = None, *, unset: bool = False
) -> Callable[[F], F]:
    """Give a command one typer option per field of dataclass ``cls`` (or of ``names``).

    The decorated function keeps its own parameters and takes the fields as ``**values``
    (keyword arguments named as the fields). ``unset``: see :func:`typer_option`.
    """
    wanted = list(names) if names is not None else [f.name for f in dataclasses.fields(cls)]

    def decorate(func: F) -> F:
        own = inspect.signature(func, eval_str=True)
        params = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
        for name in wanted:
            hint, default, info = typer_option(cls, name, unset=unset)
            params.append(
                inspect.Parameter(
                    name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=default,
                    annotation=Annotated[hint, info],
                )  # fmt: skip
            )

        def command(**kwargs: Any) -> Any:
            return func(**kwargs)

        command.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.__name__, command.__doc__ = func.__name__, func.__doc__
        command.__module__ = func.__module__
        return typing.cast(F, command)

    return decorate


ModelOption = Annotated[str | None, typer_option(Settings, "model")[2]]
VariantOption = Annotated[str | None, typer_option(LoadOptions, "variant")[2]]
ThreadsOption = Annotated[int | None, typer_option(LoadOptions, "threads")[2]]
LongTextsOption = Annotated[str | None, typer_option(LoadOptions, "long_texts")[2]]


def pick_model(option: str | None, positional: list[str]) -> tuple[str | None, list[str]]:
    """The model of a command that takes it as ``-m/--model`` or, as an alias, as its
    first argument (``qinggan info fast`` = ``qinggan info -m fast``), and the other
    arguments."""
    if option is not None or not positional:
        return option, positional
    return positional[0], positional[1:]


def _emit_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
