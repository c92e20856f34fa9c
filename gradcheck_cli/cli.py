"""The ``gradcheck`` command line: parses, wires the runner to a session, renders, exits.

Exit codes: 0 clean · 1 gradient findings · 2 usage or config error of gradcheck itself ·
3 gradcheck failed internally (the check is incomplete) · otherwise the script's own status when
it fails (an uncaught exception is 1, Ctrl-C is 130).
"""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Annotated, Any

import typer

try:  # typer >= 0.26 vendors click; older releases use the click package
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

from gradcheck_cli import __version__
from gradcheck_cli.errors import (
    EXIT_CLEAN,
    EXIT_FINDINGS,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CommandError,
)

EPILOG = """
Examples:

  gradcheck run train.py -- --epochs 1     (everything after the script goes to it)

  gradcheck run --json report.json train.py

  gradcheck run -m mypkg.train --lr 3e-4

Exit codes: 0 clean, 1 gradient findings, 2 usage/config error of gradcheck,
3 internal error of gradcheck (check incomplete); when the script itself fails,
its own exit status (uncaught exception 1, Ctrl-C 130).
"""

app = typer.Typer(
    name="gradcheck",
    help="Find parameters that never learn — and the line of your code that caused it.",
    epilog=EPILOG,
    pretty_exceptions_enable=False,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _version_text() -> str:
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    py = ".".join(str(v) for v in sys.version_info[:3])
    return f"gradcheck {__version__} (torch {torch_version}, Python {py})"


def _version(value: bool) -> None:
    if value:
        print(_version_text())
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Show gradcheck, torch and Python versions.",
        ),
    ] = False,
) -> None:
    """Find parameters that never learn — and the line of your code that caused it."""


@app.command(
    context_settings={"allow_extra_args": True, "allow_interspersed_args": False},
    epilog=EPILOG,
)
def run(
    ctx: typer.Context,
    script: Annotated[
        str | None,
        typer.Argument(
            help="The script (or directory with __main__.py) to run, then its arguments.",
            show_default=False,
        ),
    ] = None,
    module: Annotated[
        str | None,
        typer.Option(
            "-m", "--module", help="Run a module as `python -m MODULE` does.", show_default=False
        ),
    ] = None,
    json_path: Annotated[
        str | None,
        typer.Option(
            "--json", help="Write the JSON report (format 1) to this file.", show_default=False
        ),
    ] = None,
    steps: Annotated[
        str,
        typer.Option("--steps", help="Which backward calls to check: N (the first N) or 'all'."),
    ] = "all",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print findings only.")] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Print every tensor name, full stacks and info findings."
        ),
    ] = False,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No colors (NO_COLOR is honoured too).")
    ] = False,
    exit_zero: Annotated[
        bool,
        typer.Option(
            "--exit-zero",
            help="Exit 0 even when there are findings (the script's own failure still counts).",
        ),
    ] = False,
) -> None:
    """Run SCRIPT [ARGS...] (or -m MODULE [ARGS...]) exactly as python would, and check every backward()."""
    args = list(ctx.args)
    if module is not None:
        target, as_module = module, True
        if script is not None:
            args.insert(0, script)
    elif script is not None:
        target, as_module = script, False
    else:
        raise CommandError(
            "no script given (usage: gradcheck run SCRIPT [ARGS...] or gradcheck run -m MODULE [ARGS...])"
        )
    if args[:1] == ["--"]:
        args = args[
            1:
        ]  # `gradcheck run train.py -- --epochs 1`: the separator is ours, not the script's
    from gradcheck_cli.config import Config

    config = Config(steps=_parse_steps(steps))
    code = execute(
        target,
        args,
        as_module,
        config,
        json_path=json_path,
        quiet=quiet,
        verbose=verbose,
        no_color=no_color,
    )
    if exit_zero and code == EXIT_FINDINGS:
        code = EXIT_CLEAN
    raise typer.Exit(code)


def _parse_steps(value: str) -> int | str:
    if value == "all":
        return "all"
    try:
        n = int(value)
    except ValueError:
        raise CommandError(f"--steps must be a number or 'all', not {value!r}") from None
    if n < 1:
        raise CommandError("--steps must be at least 1")
    return n


def execute(
    target: str,
    args: list[str],
    as_module: bool,
    config: Any,
    *,
    json_path: str | None = None,
    quiet: bool = False,
    verbose: bool = False,
    no_color: bool = False,
) -> int:
    """Run the target under a session, render the report, return the exit code."""
    from gradcheck_cli.runner import ScriptRunner

    runner = ScriptRunner(target, args, as_module=as_module)
    runner.prepare()  # bad input fails here, before torch is even imported

    from gradcheck_cli import model as m
    from gradcheck_cli.report import make_console, render_console, to_json, write_atomic
    from gradcheck_cli.session import Session
    from gradcheck_cli.sites import display_path

    session = Session(config)
    session.start()
    try:
        outcome = runner.run()
    finally:
        session.stop()
    error = None
    if outcome.error is not None:
        e = outcome.error
        site = (
            m.Site(display_path(e.file), e.line, e.function or "", "")
            if e.file and e.line
            else None
        )
        error = m.ScriptError(e.type, e.message, site)
    script = m.ScriptInfo(
        path=display_path(runner.file or target) if not as_module else target,
        argv=[runner.argv0, *args],
        exit_code=outcome.exit_code,
        error=error,
        interrupted=outcome.interrupted,
    )
    report = session.build_report(script)
    if json_path:
        write_atomic(json_path, to_json(report))
    render_console(report, make_console(no_color=no_color), verbose=verbose, quiet=quiet)
    if outcome.exit_code != 0:
        return outcome.exit_code
    failing = {"error": ("error",), "warning": ("error", "warning"), "never": ()}[config.fail_on]
    if any(f.severity in failing for f in report.findings):
        return EXIT_FINDINGS
    return EXIT_INTERNAL if report.internal_errors else EXIT_CLEAN


def _split_module_args(argv: list[str]) -> list[str]:
    """``run -m MOD ARGS``: like ``python -m``, everything after the module belongs to it."""
    if not argv or argv[0] != "run":
        return argv
    i = 1
    while i < len(argv):
        tok = argv[i]
        if tok == "--" or not tok.startswith("-"):
            return argv
        if tok in ("-m", "--module") and i + 1 < len(argv):
            return [*argv[: i + 2], "--", *argv[i + 2 :]]
        if tok.startswith("-m") and len(tok) > 2 and not tok.startswith("--"):
            return [*argv[:i], "-m", tok[2:], "--", *argv[i + 1 :]]
        if tok.startswith("--module="):
            return [*argv[: i + 1], "--", *argv[i + 1 :]]
        if tok in ("--json", "--steps") and "=" not in tok:
            i += 2
            continue
        i += 1
    return argv


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one clear line and exit 2 for gradcheck's own errors."""
    argv = _split_module_args(list(sys.argv[1:] if argv is None else argv))
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="gradcheck", standalone_mode=False)
    except CommandError as e:
        print(f"gradcheck: error: {e.message}", file=sys.stderr)
        code = e.exit_code
    except click_exceptions.NoArgsIsHelpError as e:
        print(e.format_message(), file=sys.stderr)
        code = EXIT_USAGE
    except click_exceptions.UsageError as e:
        hint = (
            " (see gradcheck --help)"
            if e.ctx is None or e.ctx.info_name == "gradcheck"
            else f" (see gradcheck {e.ctx.info_name} --help)"
        )
        print(f"gradcheck: error: {e.format_message()}{hint}", file=sys.stderr)
        code = EXIT_USAGE
    except typer.Exit as e:
        code = e.exit_code
    except typer.Abort:
        code = EXIT_INTERRUPTED
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    sys.exit(code if isinstance(code, int) else 0)
