"""GitHub Actions output: workflow-command annotations and a step summary (never imports torch).

Annotations are escaped exactly as the Actions toolkit does (``@actions/core``, ``command.ts``),
so a message with ``%``, newlines, ``:`` or ``,`` reaches the runner intact.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from typing import IO

from gradcheck_cli.model import Finding, Report
from gradcheck_cli.report import compact_names
from gradcheck_cli.rules import RULES
from gradcheck_cli.sarif import find_repo_root, finding_text

COMMANDS = {"error": "error", "warning": "warning", "info": "notice"}


def escape_data(s: str) -> str:
    """A workflow command's message, as ``escapeData`` in the toolkit."""
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(s: str) -> str:
    """A workflow command's property value, as ``escapeProperty`` in the toolkit."""
    return escape_data(s).replace(":", "%3A").replace(",", "%2C")


def _title(f: Finding) -> str:
    rule = RULES.get(f.kind)
    return f"gradcheck {f.id}: {rule.title if rule else f.kind}"


def _repo_path(file: str, root: str) -> str:
    """The runner reads a relative ``file=`` as repository-relative, not cwd-relative."""
    path = os.path.abspath(file)
    rel = os.path.relpath(path, root)
    return path if rel.startswith(os.pardir) else rel.replace(os.sep, "/")


def annotation(f: Finding, root: str | None = None) -> str:
    """``::error file=F,line=N,title=T::MESSAGE`` for one finding."""
    props: list[tuple[str, str]] = []
    if f.site is not None:
        props.append(("file", _repo_path(f.site.file, root or find_repo_root())))
        if f.site.line >= 1:
            props.append(("line", str(f.site.line)))
    props.append(("title", _title(f)))
    joined = ",".join(f"{k}={escape_property(v)}" for k, v in props)
    return f"::{COMMANDS.get(f.severity, 'warning')} {joined}::{escape_data(finding_text(f))}"


def render_annotations(report: Report) -> str:
    """One workflow command per finding, one per line."""
    root = find_repo_root()
    return "".join(annotation(f, root) + "\n" for f in report.findings)


_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def _md_plain(s: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", s)


def _md_cell(s: str) -> str:
    """Text for a table cell: code spans kept, everything else literal, one line."""
    out: list[str] = []
    pos = 0
    for m in _CODE_SPAN.finditer(s):
        out.append(_md_plain(s[pos : m.start()]))
        # Inside a code span only the pipe needs escaping: GFM splits table cells first.
        out.append(m.group(0).replace("|", "\\|"))
        pos = m.end()
    out.append(_md_plain(s[pos:]))
    return "".join(out).replace("\r\n", "\n").replace("\n", "<br>")


def _md_code(s: str) -> str:
    """``s`` as one code span in a table cell, whatever backticks it holds."""
    s = " ".join(s.split()).replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _verdict(report: Report) -> str:
    summary = report.summary
    script = _md_code(report.script.path)
    calls = report.steps_seen
    checked = f"{report.steps_checked} of {_plural(calls, 'backward call')} checked"
    counts = ", ".join(
        _plural(summary[s], s) for s in ("error", "warning", "info") if summary.get(s)
    )
    if summary.get("error") or summary.get("warning"):
        mark = "❌" if summary.get("error") else "⚠️"
        n = summary["findings"]
        return f"{mark} **{_plural(n, 'finding')}** in {script} ({counts}; {checked})"
    if calls == 0:
        code = report.script.exit_code
        if code not in (0, None):
            return f"❌ {script} failed before calling `backward()`: nothing was checked"
        return f"⚠️ {script} never called `backward()`: nothing was checked"
    extra = f"; {counts}" if counts else ""
    return f"✅ No gradient problems in {script} ({checked}{extra})"


def render_step_summary(report: Report) -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY``: heading, verdict, and a table of the findings."""
    lines = ["## gradcheck", "", _verdict(report), ""]
    err = report.script.error
    if err is not None:
        where = f" at {_md_code(err.site.display)}" if err.site is not None else ""
        lines += [f"The script raised {_md_code(f'{err.type}: {err.message}')}{where}.", ""]
    if report.findings:
        lines += [
            "| Rule | Kind | Parameters | Location | Message |",
            "| --- | --- | --- | --- | --- |",
        ]
        for f in report.findings:
            who = _md_code(compact_names(f.parameters)) if f.parameters else ""
            where = _md_code(f.site.display) if f.site is not None else ""
            cells = [f.id, _md_code(f.kind), who, where, _md_cell(f.message)]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "**How to fix**", ""]
        seen: set[str] = set()
        for f in report.findings:
            if f.kind not in seen:
                seen.add(f.kind)
                lines.append(f"- {f.id} {_md_code(f.kind)}: {_md_cell(f.hint)}")
        lines.append("")
    return "\n".join(lines) + "\n"


def write_github_outputs(report: Report, env: Mapping[str, str], stream: IO[str]) -> None:
    """Annotations to ``stream``; the summary appended to ``$GITHUB_STEP_SUMMARY`` when set."""
    stream.write(render_annotations(report))
    stream.flush()
    path = env.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    sep = ""
    # A blank line after whatever earlier steps wrote, even without their final newline.
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as fh:
        if fh.seek(0, os.SEEK_END):
            fh.seek(-1, os.SEEK_END)
            sep = "\n" if fh.read(1) == b"\n" else "\n\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(sep + render_step_summary(report))
