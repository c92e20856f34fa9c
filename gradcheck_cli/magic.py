"""Jupyter: ``%load_ext gradcheck_cli`` registers the ``%%gradcheck`` cell magic.

::

    %%gradcheck --allow-none "model.head.*"
    loss = model(x).sum()
    loss.backward()

The cell runs in the notebook's namespace with every ``backward()`` checked; the report shows as
one output under the cell. The cell is compiled under the name ``<cell N>`` (N is its execution
count) with its line numbers as shown, the ``%%gradcheck`` line being line 1, so findings point
at ``<cell 3>:5`` rather than at IPython's internals. Options are the CLI's (``gradcheck run``).
"""

from __future__ import annotations

import argparse
import linecache
import shlex
import sys
from typing import Any

from gradcheck_cli.errors import CommandError


def _parser() -> argparse.ArgumentParser:
    from gradcheck_cli.config import OPTIONS

    p = argparse.ArgumentParser(prog="%%gradcheck", add_help=False, exit_on_error=False)
    p.add_argument("--config")
    # The config keys' options as on `gradcheck run` (from the Config fields; list keys repeat).
    for key, opt in OPTIONS.items():
        if opt.help is not None:
            p.add_argument(opt.flag, dest=key, action="append" if opt.kind.repeatable else "store")
    p.add_argument("--json", dest="json_path")
    p.add_argument("--raise", dest="raise_on_findings", action="store_true")
    p.add_argument("--no-color", action="store_true")
    p.add_argument("--verbose", "-v", action="store_true")
    return p


def parse_options(line: str) -> dict[str, Any]:
    """The magic's options as keyword arguments of :func:`gradcheck_cli.watch`."""
    try:
        ns, extra = _parser().parse_known_args(shlex.split(line))
    except (argparse.ArgumentError, ValueError) as e:
        raise CommandError(f"%%gradcheck: {e}") from None
    if extra:
        raise CommandError(
            f"%%gradcheck: unknown option {extra[0]!r} (options as on gradcheck run)"
        )
    return vars(ns)


def gradcheck_cell(line: str, cell: str) -> None:
    """``%%gradcheck [OPTIONS]``: run the cell, checking its backward calls."""
    from IPython import get_ipython
    from IPython.core.error import UsageError

    from gradcheck_cli.api import watch
    from gradcheck_cli.report import write_atomic
    from gradcheck_cli.sites import set_display_name

    shell = get_ipython()
    try:
        options = parse_options(line)
        json_path = options.pop("json_path")
        name = f"<cell {_cell_number(shell)}>"
        source = "\n" + cell  # line 1 is the %%gradcheck line itself
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
        set_display_name(name, name)
        code = compile(source, name, "exec")
        w = watch(name=name, **options)
    except CommandError as e:
        raise UsageError(e.message) from None
    with w:
        exec(code, shell.user_ns)
    shell.user_ns["_gradcheck"] = w  # the report stays reachable: _gradcheck.report
    if json_path:
        write_atomic(json_path, w.report.to_json())


def _cell_number(shell: Any) -> int:
    """The execution count of the running cell: the one IPython compiled the calling frame under
    (``shell.execution_count`` is already the next one while a cell runs, in some versions)."""
    numbers = getattr(shell.compile, "_filename_map", {})
    frame = sys._getframe(1)
    while frame is not None:
        number = numbers.get(frame.f_code.co_filename)
        if number is not None:
            return int(number)
        frame = frame.f_back  # type: ignore[assignment]
    return int(shell.execution_count)


def register(ipython: Any) -> None:
    ipython.register_magic_function(gradcheck_cell, magic_kind="cell", magic_name="gradcheck")
