"""Worker processes the script forks (``torch.multiprocessing`` / ``mp.Process``, hogwild
training): each checks its own backward calls, and the parent merges what they found.

A forked child inherits the instrumented session; :func:`adopt` (run right after the fork)
makes it the child's own, and when ``multiprocessing`` ends the child, the child writes its
report (JSON, format 1) into a directory named after the parent's pid. The parent reads and
removes them when it builds its report. Children started with the ``spawn`` start method are
fresh interpreters without gradcheck; they are not checked.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import replace

from gradcheck_cli.model import Finding, Report
from gradcheck_cli.report import to_json, write_atomic


def directory(parent_pid: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"gradcheck-{parent_pid}-children")


def write(report: Report, parent_pid: int) -> None:
    folder = directory(parent_pid)
    os.makedirs(folder, exist_ok=True)
    write_atomic(os.path.join(folder, f"{os.getpid()}.json"), to_json(report))


def collect(parent_pid: int) -> list[Report]:
    """The reports the children of ``parent_pid`` wrote (removed once read)."""
    folder = directory(parent_pid)
    try:
        files = sorted(os.listdir(folder))
    except OSError:
        return []
    reports: list[Report] = []
    for name in files:
        path = os.path.join(folder, name)
        with (
            contextlib.suppress(OSError, ValueError, KeyError, TypeError),
            open(path, encoding="utf-8") as f,
        ):
            reports.append(Report.from_dict(json.load(f)))
        with contextlib.suppress(OSError):
            os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(folder)
    return reports


def merge(report: Report, children: list[Report]) -> Report:
    """``report`` with the children's findings folded in (one finding per kind and site)."""
    if not children:
        return report
    merged: dict[tuple[object, ...], Finding] = {}
    for f in report.findings:
        merged[f.key] = f
    for child in children:
        for f in child.findings:
            have = merged.get(f.key)
            if have is None:
                merged[f.key] = replace(f, parameters=list(f.parameters), steps=list(f.steps))
                continue
            have.parameters += [p for p in f.parameters if p not in have.parameters]
            have.steps = sorted({*have.steps, *f.steps})
    calls = sum(c.steps_seen for c in children)
    note = (
        f"{calls} backward call{'s' if calls != 1 else ''} ran in {len(children)} worker "
        f"process{'es' if len(children) != 1 else ''} (forked); each was checked and merged here"
    )
    severity = {"error": 0, "warning": 1, "info": 2}
    findings = sorted(merged.values(), key=lambda f: severity.get(f.severity, 3))
    return replace(
        report,
        findings=findings,
        steps=report.steps or [s for c in children for s in c.steps][:20],
        notes=[*report.notes, note],
        internal_errors=[
            *report.internal_errors,
            *(e for c in children for e in c.internal_errors),
        ],
        steps_seen=report.steps_seen + calls,
        steps_checked=report.steps_checked + sum(c.steps_checked for c in children),
    )
