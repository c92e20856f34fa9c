"""The ``gradcheck`` command line: parses, wires the runner to a session, renders, exits.

Exit codes: 0 clean · 1 gradient findings · 2 usage or config error of gradcheck itself ·
3 gradcheck failed internally (the check is incomplete) · otherwise the script's own status when
it fails (an uncaught exception is 1, Ctrl-C is 130).
"""

from __future__ import annotations

import os
import sys
import time
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


Opt = typer.Option
_RUN_SETTINGS = {"allow_extra_args": True, "allow_interspersed_args": False}


@app.command(context_settings=_RUN_SETTINGS, epilog=EPILOG)
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
        Opt("-m", "--module", help="Run a module as `python -m MODULE` does.", show_default=False),
    ] = None,
    config_path: Annotated[
        str | None,
        Opt(
            "--config",
            help="Config file (default: $GRADCHECK_CONFIG, ./gradcheck.yaml, ./.gradcheck.yaml, [tool.gradcheck] in ./pyproject.toml).",
            show_default=False,
        ),
    ] = None,
    json_path: Annotated[
        str | None,
        Opt("--json", help="Write the JSON report (format 1) to this file.", show_default=False),
    ] = None,
    sarif_path: Annotated[
        str | None,
        Opt(
            "--sarif",
            help="Write a SARIF 2.1.0 report (GitHub code scanning) to this file.",
            show_default=False,
        ),
    ] = None,
    output_format: Annotated[
        str | None,
        Opt(
            "--format",
            help="console (default) or github (workflow annotations; automatic when GITHUB_ACTIONS=true).",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[
        str | None,
        Opt(
            "--steps",
            help="Which backward calls to check: N (the first N) or 'all'.",
            show_default=False,
        ),
    ] = None,
    stop_after: Annotated[
        int | None,
        Opt(
            "--stop-after",
            help="End the script after N checked backward calls.",
            show_default=False,
        ),
    ] = None,
    expect: Annotated[
        list[str] | None,
        Opt(
            "--expect",
            help="Name or glob that must receive a non-zero gradient (repeatable).",
            show_default=False,
        ),
    ] = None,
    allow_none: Annotated[
        list[str] | None,
        Opt(
            "--allow-none",
            help="Name or glob allowed to get no gradient (repeatable).",
            show_default=False,
        ),
    ] = None,
    allow_zero: Annotated[
        list[str] | None,
        Opt(
            "--allow-zero",
            help="Name or glob allowed to get an all-zero gradient (repeatable).",
            show_default=False,
        ),
    ] = None,
    frozen: Annotated[
        list[str] | None,
        Opt(
            "--frozen", help="Name or glob that must stay frozen (repeatable).", show_default=False
        ),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        Opt("--ignore", help="Finding kind or rule id to ignore (repeatable).", show_default=False),
    ] = None,
    zero_atol: Annotated[
        float | None,
        Opt(
            "--zero-atol",
            help="A gradient with max |g| <= this counts as zero.",
            show_default=False,
        ),
    ] = None,
    fail_on: Annotated[
        str | None, Opt("--fail-on", help="error (default), warning or never.", show_default=False)
    ] = None,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="Print findings only.")] = False,
    verbose: Annotated[
        bool,
        Opt("--verbose", "-v", help="Print every tensor name, full stacks and all info findings."),
    ] = False,
    no_color: Annotated[
        bool, Opt("--no-color", help="No colors (NO_COLOR is honoured too).")
    ] = False,
    exit_zero: Annotated[
        bool,
        Opt(
            "--exit-zero",
            help="Exit 0 even when there are findings (the script's own failure still counts).",
        ),
    ] = False,
) -> None:
    """Run SCRIPT [ARGS...] (or -m MODULE [ARGS...]) exactly as python would, and check every backward()."""
    target, args, as_module = _target(ctx, script, module)
    from gradcheck_cli.config import apply_overrides, load_config

    config = apply_overrides(
        load_config(config_path),
        steps=steps,
        stop_after=stop_after,
        expect=expect or None,
        allow_none=allow_none or None,
        allow_zero=allow_zero or None,
        frozen=frozen or None,
        ignore=ignore or None,
        zero_atol=zero_atol,
        fail_on=fail_on,
    )
    if output_format not in (None, "console", "github"):
        raise CommandError(f"--format must be 'console' or 'github', not {output_format!r}")
    github = output_format == "github" or (
        output_format is None and os.environ.get("GITHUB_ACTIONS") == "true"
    )
    code = execute(
        target,
        args,
        as_module,
        config,
        json_path=json_path,
        sarif_path=sarif_path,
        github=github,
        quiet=quiet,
        verbose=verbose,
        no_color=no_color,
    )
    if exit_zero and code == EXIT_FINDINGS:
        code = EXIT_CLEAN
    raise typer.Exit(code)


@app.command(context_settings=_RUN_SETTINGS)
def init(
    ctx: typer.Context,
    script: Annotated[
        str | None,
        typer.Argument(
            help="The script to run up to its first backward(), then its arguments.",
            show_default=False,
        ),
    ] = None,
    module: Annotated[
        str | None,
        Opt("-m", "--module", help="Run a module as `python -m MODULE` does.", show_default=False),
    ] = None,
    output: Annotated[
        str, Opt("--output", "-o", help="Where to write the config.")
    ] = "gradcheck.yaml",
    force: Annotated[bool, Opt("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Run the script to its first backward() and write a commented gradcheck.yaml listing what it trains."""
    target, args, as_module = _target(ctx, script, module)
    if os.path.exists(output) and not force:
        raise CommandError(f"{output} already exists (use --force to overwrite it)")
    from gradcheck_cli.config import Config
    from gradcheck_cli.init_config import render_config
    from gradcheck_cli.runner import ScriptRunner
    from gradcheck_cli.session import Session

    runner = ScriptRunner(target, args, as_module=as_module)
    runner.prepare()
    session = Session(Config(steps=1, stop_after=1))
    session.start()
    try:
        outcome = runner.run()
    finally:
        session.stop()
    if session.backward_calls == 0:
        raise CommandError(
            f"{target} ended (exit status {outcome.exit_code}) before calling backward(); nothing to list"
        )
    text = render_config(session, " ".join([target, *args]))
    from gradcheck_cli.report import write_atomic

    write_atomic(output, text)
    print(f"gradcheck: wrote {output}", file=sys.stderr)
    raise typer.Exit(EXIT_CLEAN)


@app.command()
def schema(
    which: Annotated[
        str, typer.Argument(help="report (the JSON report, format 1) or config (gradcheck.yaml).")
    ] = "report",
) -> None:
    """Print the JSON Schema of the report or of the config file."""
    import json
    from importlib import resources

    if which not in ("report", "config"):
        raise CommandError(f"no schema named {which!r} (choose 'report' or 'config')")
    text = (
        resources.files("gradcheck_cli")
        .joinpath("schemas", f"{which}.schema.json")
        .read_text(encoding="utf-8")
    )
    print(json.dumps(json.loads(text), indent=2))


def _target(
    ctx: typer.Context, script: str | None, module: str | None
) -> tuple[str, list[str], bool]:
    args = list(ctx.args)
    if module is not None:
        if script is not None:
            args.insert(0, script)
        target, as_module = module, True
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
    return target, args, as_module


def execute(
    target: str,
    args: list[str],
    as_module: bool,
    config: Any,
    *,
    json_path: str | None = None,
    sarif_path: str | None = None,
    github: bool = False,
    quiet: bool = False,
    verbose: bool = False,
    no_color: bool = False,
) -> int:
    """Run the target under a session, render the report(s), return the exit code."""
    from gradcheck_cli.runner import ScriptRunner

    runner = ScriptRunner(target, args, as_module=as_module)
    runner.prepare()  # bad input fails here, before torch is even imported

    from gradcheck_cli import distributed
    from gradcheck_cli import model as m
    from gradcheck_cli.report import make_console, render_console, to_json, write_atomic
    from gradcheck_cli.session import Session
    from gradcheck_cli.sites import display_path

    rank, world = distributed.rank_and_world()
    started = time.time()
    if not quiet and rank == 0 and sys.stderr.isatty():
        # One status line before the script starts: a live spinner would tangle with the script's
        # own output on the same terminal, and its streams are never wrapped.
        window = (
            "every backward() call"
            if config.steps == "all"
            else f"the first {config.steps} backward() calls"
        )
        print(f"gradcheck: running {target}, checking {window}", file=sys.stderr, flush=True)
    session = Session(config)
    session.start()
    try:
        outcome = runner.run(annotate=session.annotate)
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
    stopped = outcome.stop is not None and outcome.stop.stopped_early
    script = m.ScriptInfo(
        path=display_path(runner.file or target) if not as_module else target,
        argv=[runner.argv0, *args],
        exit_code=outcome.exit_code,
        error=error,
        interrupted=outcome.interrupted,
        stopped_early=stopped,
    )
    report = session.build_report(script)
    if world > 1:
        # Every rank checks itself; rank 0 alone merges and reports, so nothing interleaves.
        directory = distributed.parts_dir(json_path)
        if rank != 0:
            distributed.write_part(report, rank, directory)
            return outcome.exit_code
        parts = distributed.collect(directory, world, started - 5)
        report = distributed.merge({0: report, **parts}, world)
    if json_path:
        write_atomic(json_path, to_json(report))
    if sarif_path:
        import json

        from gradcheck_cli.sarif import render_sarif

        write_atomic(sarif_path, json.dumps(render_sarif(report), indent=2) + "\n")
    if outcome.stop is not None and not stopped:
        print(f"gradcheck: error: {outcome.stop.message}", file=sys.stderr)
        if world > 1:
            distributed.cleanup(directory, world)
        return outcome.stop.exit_code
    render_console(report, make_console(no_color=no_color), verbose=verbose, quiet=quiet)
    if github:
        from gradcheck_cli.github import write_github_outputs

        write_github_outputs(report, os.environ, sys.stderr)
    if world > 1:
        sys.stderr.flush()
        distributed.cleanup(directory, world)  # releases the other ranks: they wait for this
    if outcome.exit_code != 0:
        return outcome.exit_code
    if not report.ok:
        return EXIT_FINDINGS
    return EXIT_INTERNAL if report.internal_errors else EXIT_CLEAN


@app.command()
def rule(
    name: Annotated[
        str | None,
        typer.Argument(help="A finding kind (detach) or rule id (GC101).", show_default=False),
    ] = None,
    no_color: Annotated[bool, Opt("--no-color", help="Plain text output.")] = False,
) -> None:
    """Explain a finding kind: what triggers it, an example, why it matters, the fix, how to allow it.

    Without an argument: the table of all kinds.
    """
    from gradcheck_cli.ruledoc import print_rule

    print_rule(name, no_color=no_color)


_VALUE_OPTIONS = {
    "--config", "--json", "--sarif", "--format", "--steps", "--stop-after", "--expect", "--allow-none",
    "--allow-zero", "--frozen", "--ignore", "--zero-atol", "--fail-on",
}  # fmt: skip


def _split_module_args(argv: list[str]) -> list[str]:
    """``run -m MOD ARGS``: like ``python -m``, everything after the module belongs to it."""
    if not argv or argv[0] not in ("run", "init"):
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
        if tok in _VALUE_OPTIONS:
            i += 2
            continue
        i += 1
    return argv


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one clear line and exit 2 for gradcheck's own errors."""
    if argv is None and sys.argv and sys.argv[0]:
        from gradcheck_cli.sites import add_launcher

        add_launcher(sys.argv[0])  # the console script's own frame is not the user's code
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
