"""The output formats, registered here and nowhere else (no torch).

Two kinds, one interface each, called by ``cli.py`` at the end of a run:

* a :class:`FileReporter` writes a report file named by its own option (``--json PATH``):
  ``render(report) -> str``, written atomically by :func:`write_reports`;
* a :class:`Format` is chosen with ``--format NAME`` and writes after the console report:
  ``emit(report, environ, stream)`` (GitHub annotations and step summary).

The ``run`` command's options (``--json``, ``--html``, ``--sarif``, ``--format``' choices and help)
are made from these tables. A renderer lives in its own module and is imported only when used
(the HTML one needs jinja2). Adding a format: a row below and its renderer module.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from gradcheck_cli.errors import CommandError


def _load(target: str) -> Callable[..., Any]:
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class FileReporter:
    """A report file: ``--NAME PATH`` writes ``render(report)`` to PATH."""

    name: str
    help: str
    renderer: str  # "module:function", a function Report -> str

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def parameter(self) -> str:
        """The ``run`` command's parameter name for its path."""
        return f"{self.name}_path"

    def render(self, report: Any) -> str:
        return str(_load(self.renderer)(report))


@dataclass(frozen=True)
class Format:
    """``--format NAME``: ``emit(report, environ, stream)`` after the console report (None: nothing)."""

    name: str
    help: str
    emitter: str | None = None  # "module:function"

    def emit(self, report: Any, environ: Mapping[str, str], stream: IO[str] = sys.stderr) -> None:
        if self.emitter is not None:
            _load(self.emitter)(report, environ, stream)


FILE_REPORTERS: dict[str, FileReporter] = {
    r.name: r
    for r in (
        FileReporter("json", "Write the JSON report (format 1) to this file.", "gradcheck_cli.report:to_json"),
        FileReporter("html", "Write a self-contained HTML report (gradient flow, findings, cut paths) to this file.",
                     "gradcheck_cli.html:render_html"),
        FileReporter("sarif", "Write a SARIF 2.1.0 report (GitHub code scanning) to this file.",
                     "gradcheck_cli.sarif:sarif_text"),
    )
}  # fmt: skip

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("console", "console (default)"),
        Format("github", "github (workflow annotations; automatic when GITHUB_ACTIONS=true)",
               "gradcheck_cli.github:write_github_outputs"),
    )
}  # fmt: skip


def format_help() -> str:
    return " or ".join(f.help for f in FORMATS.values()) + "."


def choose_format(name: str | None, environ: Mapping[str, str]) -> Format:
    """The format ``--format name`` asks for; without one, ``github`` inside GitHub Actions."""
    if name is None:
        return FORMATS["github" if environ.get("GITHUB_ACTIONS") == "true" else "console"]
    if name not in FORMATS:
        choices = " or ".join(repr(n) for n in FORMATS)
        raise CommandError(f"--format must be {choices}, not {name!r}")
    return FORMATS[name]


def check_paths(paths: Mapping[str, str | None]) -> None:
    """Refuse unwritable report paths (``{"json": path, ...}``) before the script starts."""
    from gradcheck_cli.outputs import check_outputs

    check_outputs({FILE_REPORTERS[name].flag: path for name, path in paths.items()})


def write_reports(report: Any, paths: Mapping[str, str | None]) -> list[str]:
    """Write every report file asked for; one line per file that could not be written."""
    from gradcheck_cli.outputs import write_all

    files = [(FILE_REPORTERS[name], path) for name, path in paths.items() if path]
    return write_all([(r.flag, path, lambda r=r: r.render(report)) for r, path in files])
