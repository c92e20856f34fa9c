"""Findings as the diagnosis emits them (:class:`Raw`) and the book that groups them into the
report's :class:`~gradcheck_cli.model.Finding` objects, with the one grouping key they share.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from gradcheck_cli import model as m
from gradcheck_cli.model import group_key
from gradcheck_cli.rules import rule_for
from gradcheck_cli.sites import CallSite, Site, display_path

_MAX_STEP_INDICES = 100
_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


@dataclass
class Raw:
    """A finding before grouping: one kind, one site, the tensors it explains."""

    kind: str
    where: CallSite | Site | None
    names: list[str]
    message: str
    grad_state: str = "none"
    severity: str | None = None
    related: list[CallSite | Site] = field(default_factory=list)  # upstream lines behind the cause
    hint: str | None = None  # a fix more specific than the rule's
    earlier_steps: list[int] = field(default_factory=list)  # lost there too, explained only now
    path: list[Any] = field(default_factory=list)  # the compact cut path (model.PathNode)


def model_site(where: CallSite | Site | None) -> m.Site | None:
    site = where.site if isinstance(where, CallSite) else where
    if site is None:
        return None
    return m.Site(display_path(site.file), site.line, site.function, site.code)


def model_stack(where: CallSite | Site | None) -> list[m.Site]:
    if isinstance(where, CallSite):
        stack = [s for s in (model_site(x) for x in where.stack) if s is not None]
        if where.via is not None and not where.via.file.startswith(_TORCH_DIR):
            # A framework's frame between the user's line and the event is worth showing; torch's own is not.
            via = model_site(where.via)
            if via is not None:
                stack.insert(1, via)
        return stack
    s = model_site(where)
    return [s] if s is not None else []


def is_serious(raw: Raw) -> bool:
    """More than information: a warning or an error."""
    return (raw.severity or rule_for(raw.kind).severity) != "info"


def unattributed(name: str, lost: str, why: str) -> Raw:
    what = (
        "is all zero"
        if lost == "zero"
        else "never arrived, although the tensor is in the loss's graph"
    )
    return Raw("zero_grad_flow", None, [name], f"the gradient {what}; {why}", grad_state=lost)


class FindingBook:
    """The run's findings, grouped by :func:`group_key` as they arrive from every check."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[Any, ...], m.Finding] = {}
        self.serious = 0  # findings added that are more than information (a warning, an error)

    def values(self) -> list[m.Finding]:
        return list(self._by_key.values())

    def add(self, raw: Raw, index: int) -> m.Finding:
        """Record ``raw`` as seen at backward call ``index`` (-1: after the run)."""
        rule = rule_for(raw.kind)
        site = model_site(raw.where)
        severity = raw.severity or rule.severity
        if severity != "info":
            self.serious += 1
        key = group_key(raw.kind, site, severity, raw.message)
        finding = self._by_key.get(key)
        if finding is None:
            finding = self._by_key[key] = m.Finding(
                id=rule.id,
                kind=raw.kind,
                severity=severity,
                grad_state=raw.grad_state,
                parameters=[],
                site=site,
                stack=model_stack(raw.where),
                steps=[],
                message=raw.message,
                hint=raw.hint or rule.hint,
                related=[x for x in (model_site(r) for r in raw.related) if x is not None],
                path=list(raw.path),
            )
        for name in raw.names:
            if name not in finding.parameters:
                finding.parameters.append(name)
        for step in (*raw.earlier_steps, index):
            if step >= 0 and step not in finding.steps and len(finding.steps) < _MAX_STEP_INDICES:
                finding.steps.append(step)
        finding.steps.sort()
        return finding

    def reported_dead(self, name: str) -> bool:
        """Has ``name`` already an info finding about its dead units?"""
        return any(
            f.severity == "info" and f.kind == "zero_grad_flow" and name in f.parameters
            for f in self._by_key.values()
        )

    def for_report(self, ignores: Any) -> list[m.Finding]:
        """The findings the report shows, most severe and earliest first."""
        return sorted((f for f in self._by_key.values() if not ignores(f.kind)), key=_order)


def _order(f: m.Finding) -> tuple[int, int, str, int]:
    return (
        _SEVERITY_ORDER.get(f.severity, 3),
        f.steps[0] if f.steps else 1 << 30,
        f.site.file if f.site else "",
        f.site.line if f.site else 0,
    )
