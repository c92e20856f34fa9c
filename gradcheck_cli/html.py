"""The HTML report: one self-contained page from the report model (no torch, no network).

Jinja2 (already installed with torch, autoescaping every value) fills ``templates/report.html.j2``;
the CSS, the SVG bars and a few lines of JavaScript are inline, so the file opens from a CI
artifact or an email. The page works without JavaScript (the first checked backward is shown,
all of them when printed); the script only switches backward calls and links bars and findings.
"""

from __future__ import annotations

import linecache
import os
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2

from gradcheck_cli.flow import Group, format_norm, groups_of, scale_of
from gradcheck_cli.model import Finding, Report, Site, Step
from gradcheck_cli.report import compact_names
from gradcheck_cli.rules import RULES

_CONTEXT = 3  # source lines shown either side of a finding's line


@dataclass
class SourceLine:
    number: int
    text: str
    current: bool


@dataclass
class StepView:
    step: Step
    groups: list[Group]
    counts: dict[str, int]


def _source(site: Site | None) -> list[SourceLine]:
    """The lines around ``site`` when its file is readable here; else only the recorded line."""
    if site is None:
        return []
    lines: list[SourceLine] = []
    if os.path.isfile(site.file):
        for n in range(max(1, site.line - _CONTEXT), site.line + _CONTEXT + 1):
            text = linecache.getline(site.file, n)
            if not text and n > site.line:
                break
            lines.append(SourceLine(n, text.rstrip("\n"), n == site.line))
    if not any(x.current for x in lines):
        return [SourceLine(site.line, site.code, True)] if site.code else []
    return lines


def _verdict(report: Report) -> tuple[str, str]:
    problems = [f for f in report.findings if f.severity != "info"]
    if report.script.interrupted:
        return "interrupted", "warn"
    if problems:
        n = len(problems)
        return f"{n} finding{'s' if n != 1 else ''}", "bad"
    if report.steps_seen == 0:
        return "nothing checked (no backward() call)", "warn"
    return "no gradient problems", "good"


def _loss_of(report: Report, f: Finding) -> Step | None:
    wanted = f.steps[0] if f.steps else None
    for s in report.steps:
        if wanted is None or s.index == wanted:
            return s
    return report.steps[0] if report.steps else None


def _path(f: Finding) -> list[dict[str, Any]]:
    """The finding's cut path; for a report without one (format 1.0), its own site as the cause."""
    if f.path:
        return [{"role": n.role, "label": n.label, "site": n.site} for n in f.path]
    if f.site is not None and f.grad_state in ("none", "zero"):
        role = "op" if f.grad_state == "zero" else "cut"
        return [{"role": role, "label": f.kind, "site": f.site}]
    return []


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["norm"] = format_norm
    env.filters["names"] = compact_names
    return env


def _load_template(name: str) -> str:
    return resources.files("gradcheck_cli").joinpath("templates", name).read_text(encoding="utf-8")


def render_html(report: Report) -> str:
    scale = scale_of(report)
    steps = []
    for s in report.steps:
        if not s.checked:
            continue
        counts: dict[str, int] = {}
        for c in s.checked:
            counts[c.state] = counts.get(c.state, 0) + 1
        steps.append(StepView(s, groups_of(report, s, scale), counts))
    findings = [
        {
            "f": f,
            "index": i,
            "rule": RULES.get(f.kind),
            "source": _source(f.site),
            "loss": _loss_of(report, f),
            "path": _path(f),
        }
        for i, f in enumerate(report.findings)
    ]
    verdict, tone = _verdict(report)
    return (
        _env()
        .get_template("report.html.j2")
        .render(
            r=report,
            steps=steps,
            scale=scale,
            findings=findings,
            verdict=verdict,
            tone=tone,
            exit_status=report.exit_status,
        )
    )
