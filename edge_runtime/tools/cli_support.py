"""What every command line of the product shares: options built from declared settings, and one error handler.

- :func:`setting`: one click option whose default, choices, type and help are a declared field's.
- :func:`settings_options`: one option per scalar key of a settings model with tables (edge.toml), named by the
  field's ``flag`` or ``--<table>-<key>``, defaulting to "not given" so the file's value stands;
  :func:`nested_overrides` turns the parsed options back into the file's nested form.
- :class:`ProductGroup`: a click group whose commands' own, explainable failures (``FattyLiverError``) become one
  clear line and exit status 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from edge_runtime.errors import FattyLiverError

SEPARATOR = "__"  # a generated option's parameter name: <table>__<key>


class ProductGroup(click.Group):
    """A command group with the product's one error handler."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FattyLiverError as exc:
            raise click.ClickException(str(exc)) from None


def _plain(annotation: Any) -> Any:
    """The annotation without Optional and validators (X | None -> X, Annotated[X, ...] -> X)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = typing.get_origin(annotation) in (typing.Union, type(int | None)) and len(args) == 1
    plain = args[0] if optional else annotation
    return typing.get_args(plain)[0] if typing.get_origin(plain) is typing.Annotated else plain


def click_type(annotation: Any) -> Any:
    """click type of a declared field: its Literal choices, a path, or int/float/str; None for anything else."""
    plain = _plain(annotation)
    if typing.get_origin(plain) is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(plain)])
    if plain is Path:
        return click.Path(path_type=Path)
    return plain if plain in (int, float, str) else None


def _is_flag(info: FieldInfo) -> bool:
    return _plain(info.annotation) is bool


def setting(model: type[BaseModel], field: str, *flags: str, **kw: Any) -> Callable:
    """A click option whose default, choices, type and help are the declared field's.

    Args:
        model: the settings model.
        field: the field's name (also the option's parameter name).
        flags: the option's flags (default: --field-name).
        kw: click.option arguments that override the derived ones.
    """
    info = model.model_fields[field]
    kw.setdefault("default", info.default)
    kw.setdefault("help", info.description)
    kw.setdefault("show_default", info.default is not None)
    flags = flags or (f"--{field.replace('_', '-')}",)
    if _is_flag(info):
        if all("/" not in f for f in flags):
            kw.setdefault("is_flag", True)
    elif "type" not in kw and click_type(info.annotation) is not None:
        kw["type"] = click_type(info.annotation)
    return click.option(*flags, field, **kw)


def field_flag(table: str, key: str, info: FieldInfo) -> str:
    """The flag of one key: the field's declared ``flag``, else --<table>-<key>."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return str(extra.get("flag") or f"--{table}-{key}".replace("_", "-"))


def _table_option(table: str, key: str, info: FieldInfo) -> Callable | None:
    """One generated option, or None for a key with no command-line form (a table of profiles, say)."""
    name = field_flag(table, key, info)
    where = f"edge.toml {table}.{key}"
    default = "" if info.default is None or callable(info.default_factory) else f"; default {info.default}"
    help_text = f"{info.description} [{where}{default}]"
    param = f"{table}{SEPARATOR}{key}"
    if _is_flag(info):
        return click.option(f"{name}/--no-{name.removeprefix('--')}", param, default=None, help=help_text)
    origin = typing.get_origin(_plain(info.annotation))
    if origin in (list, dict):  # repeatable: --x A --x B, or --x KEY=VALUE for a table
        shown = f"{help_text} Repeat it{' as KEY=VALUE' if origin is dict else ''}."
        return click.option(name, param, multiple=True, default=None, callback=_repeated(origin), help=shown)
    kind = click_type(info.annotation)
    if kind is None:
        return None
    return click.option(name, param, type=kind, default=None, help=help_text)


def settings_options(model: type[BaseModel], tables: tuple[str, ...] | None = None) -> Callable:
    """One option per scalar key of the model's tables (all tables unless named).

    Args:
        model: a settings model whose fields are tables (sub-models), like RuntimeConfig.
        tables: the tables to expose; None exposes every one.
    """

    def decorate(fn: Callable) -> Callable:
        for table, table_info in reversed(list(model.model_fields.items())):
            section = _plain(table_info.annotation)
            if (tables is not None and table not in tables) or not isinstance(section, type):
                continue
            if not issubclass(section, BaseModel):
                continue
            for key, info in reversed(list(section.model_fields.items())):
                option = _table_option(table, key, info)
                fn = option(fn) if option is not None else fn
        return fn

    return decorate


def _repeated(origin: type) -> Callable:
    """A repeated option as the field's list or table; None when it was not given (the file's value stands)."""

    def convert(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> Any:
        if not values:
            return None
        if origin is list:
            return list(values)
        pairs = [v.partition("=") for v in values]
        bad = [v for v, (_, eq, _) in zip(values, pairs, strict=True) if not eq]
        if bad:
            raise click.BadParameter(f"expected KEY=VALUE, got {bad[0]!r}", param=param)
        return {k.strip(): v.strip() for k, _, v in pairs}

    return convert


def nested_overrides(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"transport__frames": x} -> {"transport": {"frames": x}}, dropping options that were not given."""
    nested: dict[str, dict[str, Any]] = {}
    for param, value in options.items():
        table, _, key = param.partition(SEPARATOR)
        if key and value is not None:
            nested.setdefault(table, {})[key] = value
    return nested
