"""Renderers: the report model to a rich console report, or to JSON (never imports torch).

Every user-controlled string (parameter names such as ``layers[0].weight``, source lines, messages)
is escaped before it meets rich markup.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from typing import IO, Any

from rich.console import Console
from rich.markup import escape

from gradcheck_cli.model import Finding, Report
from gradcheck_cli.outcome import ending
from gradcheck_cli.rules import RULES

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
_SEVERITY_MARK = {"error": "✗", "warning": "!", "info": "i"}


def _tokens(name: str) -> list[str]:
    return re.findall(r"\[[^\]]*\]|[^.\[]+", name)


def compact_names(names: list[str], limit: int = 4) -> str:
    """``model.encoder.* (4 tensors)`` when the names share a module; else one entry per module."""
    if not names:
        return "(no named tensors)"
    if len(names) == 1:
        return names[0]
    parts = [_tokens(n) for n in names]
    common: list[str] = []
    for segs in zip(*parts, strict=False):
        if len(set(segs)) != 1:
            break
        common.append(segs[0])
    if len(common) >= 2 and len(common) < min(len(p) for p in parts):
        rest = parts[0][len(common)]
        return f"{_join(common)}{'[*]' if rest.startswith('[') else '.*'} ({len(names)} tensors)"
    groups: dict[str, list[str]] = {}
    for name, toks in zip(names, parts, strict=True):
        groups.setdefault(_join(toks[:-1]) if len(toks) > 1 else name, []).append(name)
    entries = [
        f"{module}.*" if len(members) > 1 else members[0] for module, members in groups.items()
    ]
    shown = ", ".join(entries[:limit]) + (
        f" and {len(entries) - limit} more" if len(entries) > limit else ""
    )
    return f"{shown} ({len(names)} tensors)" if len(entries) < len(names) else shown


def _join(tokens: list[str]) -> str:
    return "".join(t if t.startswith("[") or i == 0 else "." + t for i, t in enumerate(tokens))


def make_console(
    file: IO[str] | None = None, no_color: bool = False, width: int | None = None
) -> Console:
    """A console for gradcheck's own output: stderr by default, never wrapping the script's streams."""
    return Console(
        file=file,
        stderr=file is None,
        no_color=no_color or bool(os.environ.get("NO_COLOR")),
        highlight=False,
        soft_wrap=True,
        width=width,
    )


def _render_finding(console: Console, f: Finding, verbose: bool) -> None:
    style = _SEVERITY_STYLE.get(f.severity, "")
    mark = _SEVERITY_MARK.get(f.severity, "-")
    who = compact_names(f.parameters)
    rule = RULES.get(f.kind)
    if rule is not None and rule.headline is not None:
        head = rule.headline
    elif f.grad_state == "none":
        head = f"{who} got no gradient"
    elif f.grad_state == "zero":
        head = f"{who} got an all-zero gradient"
    else:
        head = f"{who}: {rule.title if rule else f.kind}"
    console.print(f"[{style}]{mark} {escape(f.kind)}[/] [dim]{f.id}[/]  {escape(head)}")
    if f.site is not None:
        console.print(f"    [bold]{escape(f.site.display)}[/] in {escape(f.site.function)}")
        if f.site.code:
            console.print(f"      {escape(f.site.code)}")
    console.print(f"    {escape(f.message)}")
    if verbose:
        _render_verbose_details(console, f)
    elif f.parameters and len(f.parameters) <= 8 and who != ", ".join(f.parameters):
        console.print(f"    tensors: {escape(', '.join(f.parameters))}")
    stack = f.stack[1:3]
    if stack and not verbose:
        chain = " ← ".join(f"{s.display} {s.function}" for s in stack)
        console.print(f"    [dim]called from {escape(chain)}[/]")
    console.print(f"    [green]fix:[/] {escape(f.hint)}")
    if f.steps and f.steps != [-1]:
        steps = [s for s in f.steps if s >= 0]
        if steps:
            shown = ", ".join(str(s) for s in steps[:10]) + (" …" if len(steps) > 10 else "")
            console.print(f"    [dim]backward calls: {shown}[/]")


def _render_verbose_details(console: Console, f: Finding) -> None:
    """--verbose: every tensor by name and the whole user stack, each frame with its line."""
    if f.parameters:
        console.print(f"    tensors ({len(f.parameters)}): {escape(', '.join(f.parameters))}")
    for s in f.stack[1:]:
        code = f": {s.code}" if s.code else ""
        console.print(
            f"    [dim]called from {escape(s.display)} in {escape(s.function)}{escape(code)}[/]"
        )


def render_console(
    report: Report, console: Console, verbose: bool = False, quiet: bool = False
) -> None:
    """The human report (stderr): problems in full, information in one line each."""
    problems = [f for f in report.findings if f.severity != "info"]
    info = [f for f in report.findings if f.severity == "info"]
    script = escape(report.script.path)
    checked = report.steps_checked
    calls = report.steps_seen
    steps_text = f"{checked} of {calls} backward call{'s' if calls != 1 else ''} checked"
    end = ending(report)  # the script raised, exited non-zero or was interrupted: say so first
    if not problems:
        if not quiet:
            if end is not None:
                what = "" if calls == 0 else "; no gradient problems in what ran"
                console.print(f"[bold]gradcheck:[/] {escape(end)}{what}")
            elif calls == 0:
                console.print(
                    f"[bold]gradcheck:[/] {script} never called backward(); nothing to check"
                )
            else:
                console.print(
                    f"[bold green]gradcheck:[/] no gradient problems in {script} ({steps_text})"
                )
    else:
        n = len(problems)
        console.print()
        console.print(
            f"[bold]gradcheck:[/] {n} finding{'s' if n != 1 else ''} in {script} ({steps_text})"
        )
        if end is not None:
            console.print(f"[bold]gradcheck:[/] {escape(end)}")
        console.print()
        for f in problems:
            _render_finding(console, f, verbose)
            console.print()
        if not quiet and report.steps:
            counts: dict[str, int] = {}
            for c in report.steps[0].checked:
                counts[c.state] = counts.get(c.state, 0) + 1
            if counts:
                parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
                console.print(f"[dim]first checked backward: {parts}[/]")
    if info and not quiet:
        for f in info if verbose else info[:5]:
            where = f" at {f.site.display}" if f.site else ""
            who = f"{compact_names(f.parameters)}: " if f.parameters else ""
            console.print(
                f"[cyan]i[/] [dim]{escape(f.kind)}[/] {escape(who + f.message)}{escape(where)}"
            )
        if len(info) > 5 and not verbose:
            console.print(f"[dim]  … {len(info) - 5} more (--verbose)[/]")
    if verbose and not quiet:  # every tensor checked, with its state: the gradient-flow table
        from gradcheck_cli.flow import render_flow_table

        render_flow_table(report, console)
    _render_notes(report, console, quiet)


def _render_notes(report: Report, console: Console, quiet: bool) -> None:
    for err in report.internal_errors:
        console.print(f"[yellow]gradcheck internal error {escape(err)} — please report it[/]")
    if quiet:
        return
    for note in report.notes:
        console.print(f"[dim]note: {escape(note)}[/]")
    if report.script.stopped_early:
        console.print("[dim]note: the script was stopped early by stop_after[/]")


def to_json(report: Report) -> str:
    return report.to_json()


def write_atomic(path: str, text: str) -> None:
    """Write via a temp file in the same directory and rename: readers never see half a report."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".gradcheck-", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _mode_for(path: str) -> int:
    """The mode ``open(path, "w")`` would give: an existing file's own, else 0o666 less the umask
    (``mkstemp`` creates 0600, which CI artifact uploads and shared folders cannot read)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def load_json(path: str) -> Report:
    with open(path, encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return Report.from_dict(data)
