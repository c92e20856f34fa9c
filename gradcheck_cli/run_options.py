"""The ``run`` options made from tables: one per config key, one per report file.

Typer reads a command's options from its signature, so :func:`with_table_options` adds one
keyword parameter per :data:`gradcheck_cli.config.OPTIONS` entry that has a ``help`` line
(``--steps N|all``, ``--expect GLOB`` repeatable, ...) and one per
:data:`gradcheck_cli.reporters.FILE_REPORTERS` entry (``--json PATH``). Their values come back
through the command's ``**values`` and are split by :func:`split_values`. Command-line values are
strings and are checked by the same ``coerce`` as the file's values (``config.apply_overrides``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from gradcheck_cli.config import OPTIONS
from gradcheck_cli.reporters import FILE_REPORTERS

CONFIG_SECTION = "Configuration (wins over the config file)"
REPORTS_SECTION = "Reports"

F = TypeVar("F", bound=Callable[..., Any])


def _annotation(flag: str, metavar: str, help: str, repeatable: bool) -> Any:
    value_type = list[str] | None if repeatable else str | None
    return Annotated[value_type, typer.Option(flag, metavar=metavar, help=help, show_default=False)]


def _keyword(name: str, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
    )


def table_parameters() -> list[inspect.Parameter]:
    """The config keys' options, then the report files' options."""
    params = [
        _keyword(key, _annotation(o.flag, o.kind.metavar, o.help, o.kind.repeatable))
        for key, o in OPTIONS.items()
        if o.help is not None
    ]
    params += [
        _keyword(r.parameter, _annotation(r.flag, "PATH", r.help, False))
        for r in FILE_REPORTERS.values()
    ]
    return params


def with_table_options(func: F) -> F:
    """``func`` (which takes ``**values``) as Typer sees it: with the tables' options added."""
    signature = inspect.signature(func, eval_str=True)
    own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    func.__signature__ = signature.replace(parameters=[*own, *table_parameters()])  # type: ignore[attr-defined]
    return func


def split_values(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str | None]]:
    """``**values`` -> (config overrides for ``apply_overrides``, report paths by reporter name).

    An option not given is None (a repeatable one may come as an empty list): the file's value
    stays.
    """
    given = {name: None if value in (None, [], ()) else value for name, value in values.items()}
    overrides = {key: given.get(key) for key in OPTIONS if OPTIONS[key].help is not None}
    paths = {name: given.get(r.parameter) for name, r in FILE_REPORTERS.items()}
    return overrides, paths


def section(name: str) -> str | None:
    """The ``--help`` section of a table-made option (None for others)."""
    if name in OPTIONS:
        return CONFIG_SECTION
    if any(r.parameter == name for r in FILE_REPORTERS.values()):
        return REPORTS_SECTION
    return None
