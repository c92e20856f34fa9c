"""The Python API: ``with gradcheck_cli.watch() as gc:`` and the ``@gradcheck_cli.check`` decorator.

A thin layer over :class:`~gradcheck_cli.session.Session`: it loads the config the way the CLI
does (a file, or discovery in the working directory, then keyword overrides), builds the
:class:`~gradcheck_cli.model.Report` on exit, shows it (rich on a terminal, one HTML output in
Jupyter) and optionally raises :class:`GradcheckError`. Inside an active session (``gradcheck
run``, an outer ``watch``) it installs nothing: it reports what the outer session found during
the block, and shows nothing itself, so nothing is reported twice.
"""

from __future__ import annotations

import functools
import io
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from gradcheck_cli import model as m
from gradcheck_cli.config import Config, apply_overrides, load_config
from gradcheck_cli.errors import GradcheckExit

F = TypeVar("F", bound=Callable[..., Any])


class GradcheckError(AssertionError):
    """Raised by ``watch(raise_on_findings=True)`` / ``check``: the message is the report."""

    def __init__(self, report: m.Report) -> None:
        super().__init__(report_text(report))
        self.report = report


def report_text(report: m.Report, *, verbose: bool = False, width: int = 100) -> str:
    """The console report as plain text (no colour, no ANSI codes)."""
    from rich.console import Console

    from gradcheck_cli.report import render_console

    buf = io.StringIO()
    # force_jupyter=False: in a notebook rich would otherwise display each line, ignoring ``file``.
    console = Console(
        file=buf,
        width=width,
        force_terminal=False,
        force_jupyter=False,
        color_system=None,
        no_color=True,
        soft_wrap=True,
    )
    render_console(report, console, verbose=verbose)
    return buf.getvalue().strip("\n") + "\n"


def resolve_config(
    config: str | os.PathLike[str] | Config | None = None,
    *,
    cwd: str | None = None,
    **keys: Any,
) -> Config:
    """The effective config: ``config`` (a path, a Config, or None to discover ``gradcheck.yaml``
    / ``[tool.gradcheck]`` in ``cwd``) with every key given here replacing the file's value."""
    if isinstance(config, Config):
        base = config
    else:
        base = load_config(os.fspath(config) if config is not None else None, cwd=cwd)
    return apply_overrides(base, **{k: _as_list(k, v) for k, v in keys.items()})


def _as_list(key: str, value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value


def _in_jupyter() -> bool:
    shell = _ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _ipython() -> Any:
    if "IPython" not in sys.modules:
        return None
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - half-installed IPython
        return None
    return get_ipython()


def name_notebook_cells() -> None:
    """Show IPython's cell files (``/tmp/ipykernel_1/123.py``) as ``<cell 3>`` in reports."""
    shell = _ipython()
    names = getattr(getattr(shell, "compile", None), "_filename_map", None)
    if not isinstance(names, dict):
        return
    from gradcheck_cli.sites import set_display_name

    for filename, number in names.items():
        set_display_name(filename, f"<cell {number}>")


def show(report: m.Report, *, no_color: bool = False, verbose: bool = False) -> None:
    """Print the report: one HTML output in Jupyter, rich text on stderr elsewhere."""
    if _in_jupyter():
        _show_in_notebook(report, no_color=no_color, verbose=verbose)
        return
    from gradcheck_cli.report import make_console, render_console

    render_console(report, make_console(no_color=no_color), verbose=verbose)


def _show_in_notebook(report: m.Report, *, no_color: bool, verbose: bool) -> None:
    from html import escape

    from IPython.display import display
    from rich.console import Console

    from gradcheck_cli.report import render_console

    text = report_text(report, verbose=verbose)
    if no_color:
        html = f"<pre>{escape(text)}</pre>"
    else:
        console = Console(
            file=io.StringIO(), record=True, width=100, force_jupyter=False, highlight=False
        )
        render_console(report, console, verbose=verbose)
        html = console.export_html(inline_styles=True, code_format="<pre>{code}</pre>")
    # One output with both forms: the plain text carries no ANSI codes.
    display({"text/plain": text, "text/html": html}, raw=True)


class Watch:
    """Checks every ``backward()`` in a ``with`` block; see :func:`watch`."""

    def __init__(
        self,
        config: Config,
        *,
        name: str,
        raise_on_findings: bool = False,
        show: bool = True,
        no_color: bool = False,
        verbose: bool = False,
    ) -> None:
        self.config = config
        self.name = name
        self.raise_on_findings = raise_on_findings
        self.show = show
        self.no_color = no_color
        self.verbose = verbose
        self.report: m.Report | None = None
        self.session: Any = None  # the gradcheck_cli.session.Session doing the work
        self._outer: Any = None
        self._first_finding = 0
        self._first_call = 0

    @property
    def ok(self) -> bool:
        """True when the block ran with no finding that fails the check."""
        return self.report is not None and self.report.ok

    @property
    def findings(self) -> list[m.Finding]:
        return self.report.findings if self.report is not None else []

    def __getattr__(self, name: str) -> Any:
        # The engine's own attributes (``build_report``, ``steps_checked``...), as the
        # session that ``watch()`` used to yield had them.
        session = self.__dict__.get("session")
        if session is None:
            raise AttributeError(name)
        return getattr(session, name)

    def __enter__(self) -> Watch:
        from gradcheck_cli.session import Session, active_session

        self.report = None
        self._outer = active_session()
        if self._outer is not None:  # gradcheck run, or an outer watch: it does the checking
            self.session = self._outer
            self._first_finding = len(self._outer.findings)
            self._first_call = self._outer.backward_calls
        else:
            self.session = Session(self.config).start()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        stopped_early = isinstance(exc, GradcheckExit) and exc.stopped_early
        if self._outer is None:
            self.session.stop()
        name_notebook_cells()
        script = m.ScriptInfo(path=self.name, argv=[], stopped_early=stopped_early)
        self.report = self._build(script)
        if exc is not None and not stopped_early:
            return False  # the block's own error wins; the report is still in .report
        if self.show and self._outer is None:
            show(self.report, no_color=self.no_color, verbose=self.verbose)
        if self.raise_on_findings and not self.report.ok:
            raise GradcheckError(self.report)
        return stopped_early

    def _build(self, script: m.ScriptInfo) -> m.Report:
        if self._outer is None:
            return self.session.build_report(script)
        # Nested: only what the outer session found during this block, and without flushing the
        # outer session's pending attributions (they belong to its own report).
        session = self.session
        zero_check = session.zero_check
        pending, zero_check.pending = zero_check.pending, {}
        try:
            report = session.build_report(script)
        finally:
            zero_check.pending = pending
        mine = {id(f) for f in list(session.findings)[self._first_finding :]}
        report.findings = [f for f in report.findings if id(f) in mine]
        report.steps = [s for s in report.steps if s.index >= self._first_call]
        report.steps_seen = session.backward_calls - self._first_call
        report.steps_checked = len(report.steps)
        report.config = self.config.to_dict()
        return report


def _caller_name(depth: int) -> str:
    from gradcheck_cli.sites import display_path, is_user_file

    frame = sys._getframe(depth)
    while frame is not None and not is_user_file(frame.f_code.co_filename):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "<python>"
    name_notebook_cells()
    return display_path(frame.f_code.co_filename)


def watch(
    config: str | os.PathLike[str] | Config | None = None,
    *,
    raise_on_findings: bool = False,
    show: bool = True,
    no_color: bool = False,
    verbose: bool = False,
    name: str | None = None,
    **keys: Any,
) -> Watch:
    """Check every ``backward()`` run inside the ``with`` block, as ``gradcheck run`` does.

    ``config`` is a ``gradcheck.yaml`` / ``pyproject.toml`` path or a :class:`Config`; by default
    the working directory's config is used, as by the CLI. The other keyword arguments are the
    config file's keys (``expect=[...]``, ``steps=3``: ``gradcheck_cli.config.OPTIONS``) and
    replace its values; an unknown one is a TypeError. On exit the report is printed (``show=False`` to keep
    quiet) and kept in ``.report``; ``raise_on_findings=True`` raises :class:`GradcheckError`
    when a finding fails the check (``fail_on``).

    Example::

        with gradcheck_cli.watch(expect=["model.*"]) as gc:
            loss = model(x).sum()
            loss.backward()
        assert gc.report.ok, gc.report.to_json()
    """
    cfg = resolve_config(config, **keys)
    return Watch(
        cfg,
        name=name or _caller_name(2),
        raise_on_findings=raise_on_findings,
        show=show,
        no_color=no_color,
        verbose=verbose,
    )


def check(fn: F | None = None, /, **options: Any) -> Any:
    """Decorator: check the backward calls of each call of a step function.

    ``@gradcheck_cli.check`` or ``@gradcheck_cli.check(expect=[...], raise_on_findings=True)``
    (the options of :func:`watch`). The last call's report is ``step.gradcheck.report``.
    """

    def decorate(func: F) -> F:
        name = options.pop("name", None) or _code_name(func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            w = watch(name=name, **options)
            wrapper.gradcheck = w  # type: ignore[attr-defined]
            with w:
                return func(*args, **kwargs)

        wrapper.gradcheck = None  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate(fn) if fn is not None else decorate


def _code_name(func: Callable[..., Any]) -> str:
    from gradcheck_cli.sites import display_path

    code = getattr(func, "__code__", None)
    return display_path(code.co_filename) if code is not None else "<python>"
