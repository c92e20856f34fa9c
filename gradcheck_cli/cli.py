"""The ``gradcheck`` command line: parses, wires the runner to a session, renders, exits.

Exit codes: 0 clean · 1 gradient findings · 2 usage or config error of gradcheck itself ·
3 gradcheck failed internally (the check is incomplete) · 4 a report file could not be written ·
otherwise the script's own status when it fails (an uncaught exception is 1, Ctrl-C is 130). The
JSON report's ``summary.outcome`` tells them apart where the numbers collide (see outcome.py).
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
    EXIT_INTERRUPTED,
    EXIT_OUTPUT,
    EXIT_USAGE,
    CommandError,
)
from gradcheck_cli.help import SectionedCommand
from gradcheck_cli.reporters import FORMATS, Format, choose_format, format_help
from gradcheck_cli.run_options import split_values, with_table_options

EPILOG = """
\b
Examples:
  gradcheck run train.py -- --epochs 1      everything after the script goes to it
  gradcheck run --json report.json train.py
  gradcheck run --stop-after 1 --sarif gradcheck.sarif train.py
  gradcheck run -m mypkg.train --lr 3e-4
  gradcheck run --nproc-per-node 2 train.py  two ranks (torchrun's launcher), one report
  gradcheck init train.py                   write a gradcheck.yaml for train.py

\b
Exit codes:
  0  clean               1  gradient findings    2  usage/config error of gradcheck
  3  gradcheck failed internally (check incomplete)
  4  a report file could not be written (the console report was printed)
  otherwise the script's own status (uncaught exception 1, Ctrl-C 130); the JSON
  report's summary.outcome always says which.
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
# Shared by `run` and `show`: how the console report is printed.
QuietOption = Annotated[bool, Opt("--quiet", "-q", help="Print findings only.")]
VerboseOption = Annotated[
    bool, Opt("--verbose", "-v", help="Print every tensor name, full stacks and all info findings.")
]
NoColorOption = Annotated[bool, Opt("--no-color", help="No colors (NO_COLOR is honoured too).")]

_RUN_SETTINGS = {"allow_extra_args": True, "allow_interspersed_args": False}


def _script_argument(help: str) -> Any:
    return Annotated[str | None, typer.Argument(metavar="SCRIPT", help=help, show_default=False)]


RunScript = _script_argument(
    "The script (or directory with __main__.py) to run, then its arguments."
)
InitScript = _script_argument("The script to run up to its first backward(), then its arguments.")
# Shared by `run` and `init`.
ModuleOption = Annotated[
    str | None,
    Opt(
        "-m",
        "--module",
        metavar="MODULE",
        help="Run a module as `python -m MODULE` does.",
        show_default=False,
    ),
]


# The config keys' options (--steps, --expect, ...) and the report files' (--json, ...) are added
# to this signature from their tables (run_options.py); they arrive in **values.
@app.command(context_settings=_RUN_SETTINGS, epilog=EPILOG, cls=SectionedCommand)
@with_table_options
def run(
    ctx: typer.Context,
    script: RunScript = None,
    module: ModuleOption = None,
    config_path: Annotated[
        str | None,
        Opt(
            "--config",
            metavar="PATH",
            help="Config file (default: $GRADCHECK_CONFIG, ./gradcheck.yaml, ./.gradcheck.yaml, [tool.gradcheck] in ./pyproject.toml).",
            show_default=False,
        ),
    ] = None,
    output_format: Annotated[
        str | None,
        Opt("--format", metavar="|".join(FORMATS), help=format_help(), show_default=False),
    ] = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    no_color: NoColorOption = False,
    exit_zero: Annotated[
        bool,
        Opt(
            "--exit-zero",
            help="Exit 0 even when there are findings (the script's own failure still counts).",
        ),
    ] = False,
    nproc_per_node: Annotated[
        str | None,
        Opt(
            "--nproc-per-node",
            metavar="N",
            help="Launch N ranks through torch's launcher (as torchrun --standalone), print one merged report.",
            show_default=False,
        ),
    ] = None,
    **values: Any,
) -> None:
    """Run SCRIPT [ARGS...] (or -m MODULE [ARGS...]) exactly as python would, and check every backward()."""
    target, args, as_module = _target(ctx, script, module)
    from gradcheck_cli.config import apply_overrides, for_script, load_config

    overrides, paths = split_values(values)
    config = apply_overrides(load_config(config_path), **overrides)
    config = for_script(config, target, as_module)
    output = choose_format(output_format, os.environ)
    if nproc_per_node is not None:
        raise typer.Exit(_launch(ctx, nproc_per_node, target, args, as_module))
    code = execute(
        target,
        args,
        as_module,
        config,
        paths=paths,
        output=output,
        quiet=quiet,
        verbose=verbose,
        no_color=no_color,
    )
    if exit_zero and code == EXIT_FINDINGS:
        code = EXIT_CLEAN
    raise typer.Exit(code)


def _launch(ctx: typer.Context, nproc: str, target: str, args: list[str], as_module: bool) -> int:
    """``run --nproc-per-node``: every rank runs this command line without the option."""
    from gradcheck_cli import launch

    nproc = launch.check_nproc(nproc)
    rank_argv = launch.forwarded_options(ctx, {"nproc_per_node", "module"})
    rank_argv += ["-m", target] if as_module else [target]
    if args:
        rank_argv += ["--", *args]  # each rank drops this `--` again: the script gets `args`
    return launch.launch(nproc, rank_argv)


@app.command(context_settings=_RUN_SETTINGS, cls=SectionedCommand)
def init(
    ctx: typer.Context,
    script: InitScript = None,
    module: ModuleOption = None,
    output: Annotated[
        str, Opt("--output", "-o", metavar="PATH", help="Where to write the config.")
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
    written_for = (
        target if as_module else os.path.relpath(target, os.path.dirname(os.path.abspath(output)))
    )
    text = render_config(session, " ".join([target, *args]), written_for)
    from gradcheck_cli.init_config import summary_lines
    from gradcheck_cli.report import write_atomic

    write_atomic(output, text)
    print(f"gradcheck: wrote {output} for {target}:", file=sys.stderr)
    for line in summary_lines(text):
        print(f"  {line}", file=sys.stderr)
    raise typer.Exit(EXIT_CLEAN)


@app.command()
def show(
    report_path: Annotated[
        str,
        typer.Argument(
            metavar="REPORT.json", help="A JSON report written by `gradcheck run --json`."
        ),
    ],
    html_path: Annotated[
        str | None,
        Opt(
            "--html", metavar="PATH", help="Write the HTML report to this file.", show_default=False
        ),
    ] = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    no_color: NoColorOption = False,
) -> None:
    """Print a saved JSON report as `run` printed it (no torch needed); --html writes its HTML page."""
    from gradcheck_cli.show import show_report

    raise typer.Exit(show_report(report_path, html_path, quiet, verbose, no_color))


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
    if which == "config":
        from gradcheck_cli.config import config_schema

        print(json.dumps(config_schema(), indent=2))
        return
    text = (
        resources.files("gradcheck_cli")
        .joinpath("schemas", "report.schema.json")
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
        name = ctx.info_name or "run"  # `gradcheck init` gives its own usage, not run's
        raise CommandError(
            f"no script given (usage: gradcheck {name} SCRIPT [ARGS...] or gradcheck {name} -m MODULE [ARGS...])"
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
    paths: dict[str, str | None] | None = None,
    output: Format | None = None,
    quiet: bool = False,
    verbose: bool = False,
    no_color: bool = False,
) -> int:
    """Run the target under a session, render the report(s), return the exit code.

    ``paths``: report files by reporter name (``{"json": "r.json"}``); ``output``: the format
    written after the console report (reporters.py).
    """
    from gradcheck_cli.reporters import check_paths
    from gradcheck_cli.runner import ScriptRunner

    paths = paths or {}
    runner = ScriptRunner(target, args, as_module=as_module)
    runner.prepare()  # bad input fails here, before torch is even imported
    check_paths(paths)
    outputs = {"paths": paths, "output": output}
    shown = {"verbose": verbose, "quiet": quiet, "no_color": no_color}
    try:  # Ctrl-C while torch imports still gets its report (README: "also when interrupted")
        from gradcheck_cli import distributed
        from gradcheck_cli.session import Session
    except KeyboardInterrupt:
        report = _report_without_session(runner, args, as_module, config)
        return _finish(report, config, None, **outputs, **shown)

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
    stopped = outcome.stop is not None and outcome.stop.stopped_early
    report = session.build_report(_script_info(runner, args, as_module, outcome, stopped))
    directory = None
    if world > 1:
        # Every rank checks itself; rank 0 alone merges and reports, so nothing interleaves.
        directory = distributed.parts_dir(paths.get("json"))
        own = distributed.Part(report, session.sharded_names())
        if rank != 0:
            distributed.write_part(report, rank, directory, own.sharded)
            return outcome.exit_code
        parts = distributed.collect(directory, world, started - 5)
        report = distributed.merge({0: own, **parts}, world)
    stop = outcome.stop if outcome.stop is not None and not stopped else None
    code = _finish(report, config, stop, **outputs, **shown)
    if directory is not None:
        sys.stderr.flush()
        distributed.cleanup(directory, world)  # releases the other ranks: they wait for this
    return code


def _script_info(runner: Any, args: list[str], as_module: bool, outcome: Any, stopped: bool) -> Any:
    """The report's ``script`` block; a crash's site is the user's innermost frame, with its line."""
    import linecache

    from gradcheck_cli import model as m
    from gradcheck_cli.sites import display_path

    error = None
    if outcome.error is not None:
        e = outcome.error
        site = None
        if e.site is not None and e.site.file and e.site.line:
            code = linecache.getline(e.site.file, e.site.line).strip()
            site = m.Site(display_path(e.site.file), e.site.line, e.site.function, code)
        error = m.ScriptError(e.type, e.message, site)
    return m.ScriptInfo(
        path=display_path(runner.file or runner.target) if not as_module else runner.target,
        argv=[runner.argv0, *args],
        exit_code=outcome.exit_code,
        error=error,
        interrupted=outcome.interrupted,
        stopped_early=stopped,
    )


def _report_without_session(runner: Any, args: list[str], as_module: bool, config: Any) -> Any:
    """The report of a run interrupted before the script started (torch may be half imported)."""
    import platform

    from gradcheck_cli import model as m

    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    path = runner.target if as_module else os.path.relpath(runner.file or runner.target)
    script = m.ScriptInfo(path, [runner.argv0, *args], EXIT_INTERRUPTED, None, interrupted=True)
    return m.Report(
        tool={"name": "gradcheck", "version": __version__},
        environment={
            "python": platform.python_version(),
            "torch": torch_version,
            "platform": platform.platform(),
        },
        script=script,
        config=config.to_dict(),
    )


def _finish(
    report: Any,
    config: Any,
    stop: Any,
    *,
    paths: dict[str, str | None],
    output: Format | None,
    verbose: bool,
    quiet: bool,
    no_color: bool,
) -> int:
    """Decide the outcome, write the report files, print the console report; the exit status.

    A report file that cannot be written costs nothing else: the console report is still printed,
    one line names the file and why, and the status is EXIT_OUTPUT.
    """
    from gradcheck_cli.outcome import decide
    from gradcheck_cli.report import make_console, render_console
    from gradcheck_cli.reporters import write_reports

    code, report.outcome = decide(report, config.fail_on, stop.exit_code if stop else None)
    failed = write_reports(report, paths)
    if stop is not None:
        print(f"gradcheck: error: {stop.message}", file=sys.stderr)
    else:
        render_console(report, make_console(no_color=no_color), verbose=verbose, quiet=quiet)
        if output is not None:
            output.emit(report, os.environ, sys.stderr)
    for line in failed:
        print(f"gradcheck: error: {line}", file=sys.stderr)
    return EXIT_OUTPUT if failed else code


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


def _value_options(command: Any, name: str) -> set[str]:
    """The options of subcommand ``name`` that take a value (``--steps``, ``--json``, ...)."""
    params = command.commands[name].params
    return {opt for p in params if not getattr(p, "is_flag", True) for opt in p.opts}


def _split_module_args(argv: list[str], command: Any) -> list[str]:
    """``run -m MOD ARGS``: like ``python -m``, everything after the module belongs to it."""
    if not argv or argv[0] not in ("run", "init"):
        return argv
    value_options = _value_options(command, argv[0])
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
        if tok in value_options:
            i += 2
            continue
        i += 1
    return argv


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one clear line and exit 2 for gradcheck's own errors."""
    if argv is None and sys.argv and sys.argv[0]:
        from gradcheck_cli.launchers import (
            add_launcher,  # no torch: Ctrl-C may come during its import
        )

        add_launcher(sys.argv[0])  # the console script's own frame is not the user's code
    command = typer.main.get_command(app)
    argv = _split_module_args(list(sys.argv[1:] if argv is None else argv), command)
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
