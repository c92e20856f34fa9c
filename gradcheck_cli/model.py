"""The report model: plain dataclasses that round-trip through JSON (no torch here).

A saved report can be re-rendered and tested without torch. ``FORMAT`` is the JSON contract's
version; bump it on any incompatible change and say what changed below.

Format history:
  1 — first format: script, config, steps, findings (grouped by kind and site), summary.
  1.1 — optional additions (``format_minor: 1``; a 1.0 report still loads and a 1.0 reader may
        ignore them): ``findings[].path``, the compact cut path of a finding (the nodes between the
        loss and the parameters: the cut or the op where the gradient died, the autograd nodes
        behind it); ``environment.device``. Per-parameter norms and states per checked backward
        were already in ``steps[].checked``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from gradcheck_cli.errors import EXIT_CLEAN, EXIT_FINDINGS, EXIT_INTERNAL

FORMAT = 1
FORMAT_MINOR = 1  # optional additions within format 1 (see the history above)


@dataclass
class Site:
    file: str
    line: int
    function: str
    code: str

    @property
    def display(self) -> str:
        return f"{self.file}:{self.line}"

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Site | None:
        return (
            None
            if d is None
            else cls(d["file"], int(d["line"]), d.get("function", ""), d.get("code", ""))
        )


def group_key(kind: str, site: Any, severity: str | None, message: str) -> tuple[Any, ...]:
    """What makes two findings one: kind, line and severity; without a line, the message too (an
    unattributed error must not fold into an info finding, or hide in it), and the message for
    unused parameters (two library models called on one line each have their own)."""
    file, line = (site.file, site.line) if site is not None else (None, None)
    keep_message = site is None or kind == "unused_parameter"
    return (kind, file, line, severity, message if keep_message else None)


def _sites(items: list[dict[str, Any]]) -> list[Site]:
    return [s for s in (Site.from_dict(x) for x in items) if s is not None]


@dataclass
class LossInfo:
    shape: list[int]
    dtype: str
    requires_grad: bool
    grad_fn: str | None


@dataclass
class Checked:
    """One expected tensor at one step: ``ok`` | ``none`` | ``zero`` | ``frozen``."""

    name: str
    state: str
    norm: float | None = None
    dead_fraction: float | None = (
        None  # share of output units (rows) whose gradient is exactly zero
    )


@dataclass
class Step:
    index: int
    api: str
    site: Site | None
    loss: LossInfo | None
    checked: list[Checked] = field(default_factory=list)


@dataclass
class PathNode:
    """One node of a finding's cut path, listed from the loss towards the parameters.

    ``role``: ``cut`` (the line that cut the graph), ``op`` (the op where a gradient died),
    ``node`` (an autograd node), ``collapsed`` (``label`` says how many nodes were left out).
    The loss and the parameters at its two ends come from the step and the finding.
    """

    role: str
    label: str
    site: Site | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PathNode:
        return cls(str(d["role"]), str(d["label"]), Site.from_dict(d.get("site")))


@dataclass
class Finding:
    id: str
    kind: str
    severity: str  # error | warning | info
    grad_state: str  # none | zero | raised
    parameters: list[str]
    site: Site | None
    stack: list[Site]
    steps: list[int]
    message: str
    hint: str
    related: list[Site] = field(default_factory=list)  # upstream lines behind the cause
    ranks: list[int] = field(default_factory=list)  # distributed runs: the ranks it occurred on
    path: list[PathNode] = field(default_factory=list)  # format 1.1: the compact cut path

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        known = {f.name for f in fields(cls)}
        return cls(
            **{
                **{k: v for k, v in d.items() if k in known},
                "parameters": list(d["parameters"]),
                "site": Site.from_dict(d.get("site")),
                "stack": _sites(d.get("stack", [])),
                "steps": list(d.get("steps", [])),
                "related": _sites(d.get("related", [])),
                "ranks": list(d.get("ranks", [])),
                "path": [PathNode.from_dict(x) for x in d.get("path", [])],
            }
        )

    @property
    def key(self) -> tuple[Any, ...]:
        """The grouping key: findings of the same key are one (across ranks too)."""
        return group_key(self.kind, self.site, self.severity, self.message)


@dataclass
class ScriptError:
    type: str
    message: str
    site: Site | None


@dataclass
class ScriptInfo:
    path: str
    argv: list[str]
    exit_code: int | None = None
    error: ScriptError | None = None
    interrupted: bool = False
    stopped_early: bool = False


# Which severities fail a run, for each ``fail_on`` value.
FAIL_SEVERITIES: dict[str, tuple[str, ...]] = {
    "error": ("error",),
    "warning": ("error", "warning"),
    "never": (),
}


@dataclass
class Report:
    tool: dict[str, str]
    environment: dict[str, str]
    script: ScriptInfo
    config: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    internal_errors: list[str] = field(
        default_factory=list
    )  # our own failures: the check is incomplete
    steps_seen: int = 0  # backward calls seen
    steps_checked: int = 0
    format: int = FORMAT
    outcome: str | None = None  # how the run ended: gradcheck_cli.outcome.OUTCOMES
    format_minor: int = FORMAT_MINOR

    @property
    def failing(self) -> list[Finding]:
        """The findings that fail the check under the config's ``fail_on``."""
        severities = FAIL_SEVERITIES.get(self.config.get("fail_on", "error"), ("error",))
        return [f for f in self.findings if f.severity in severities]

    @property
    def ok(self) -> bool:
        """True when no finding fails the check (``fail_on``: error, warning or never)."""
        return not self.failing

    def to_json(self) -> str:
        """The JSON report (format 1), as ``gradcheck run --json`` writes it."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @property
    def summary(self) -> dict[str, Any]:
        by_kind: dict[str, int] = {}
        by_severity = {"error": 0, "warning": 0, "info": 0}
        for f in self.findings:
            by_kind[f.kind] = by_kind.get(f.kind, 0) + 1
            by_severity[f.severity] = by_severity.get(f.severity, 0) + 1
        return {
            "findings": len(self.findings),
            **by_severity,
            "by_kind": by_kind,
            "backward_calls": self.steps_seen,
            "steps_checked": self.steps_checked,
            **({"outcome": self.outcome} if self.outcome else {}),
        }

    @property
    def exit_status(self) -> int:
        """gradcheck's exit status for this report (the CLI's contract, see errors.py)."""
        if self.script.exit_code not in (0, None):
            return int(self.script.exit_code)  # type: ignore[arg-type]
        if self.failing:
            return EXIT_FINDINGS
        return EXIT_INTERNAL if self.internal_errors else EXIT_CLEAN

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        order = [
            "format",
            "format_minor",
            "tool",
            "environment",
            "script",
            "config",
            "steps",
            "findings",
            "notes",
            "internal_errors",
        ]
        out = {k: d[k] for k in order}
        out["summary"] = self.summary
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        if d.get("format") != FORMAT:
            raise ValueError(
                f"unsupported report format {d.get('format')!r} (this gradcheck reads {FORMAT})"
            )
        s = d["script"]
        err = s.get("error")
        script = ScriptInfo(
            path=s["path"],
            argv=list(s["argv"]),
            exit_code=s.get("exit_code"),
            error=None
            if err is None
            else ScriptError(err["type"], err["message"], Site.from_dict(err.get("site"))),
            interrupted=bool(s.get("interrupted", False)),
            stopped_early=bool(s.get("stopped_early", False)),
        )
        steps = [
            Step(
                index=st["index"],
                api=st.get("api", "Tensor.backward"),
                site=Site.from_dict(st.get("site")),
                loss=None if st.get("loss") is None else LossInfo(**st["loss"]),
                checked=[Checked(**c) for c in st.get("checked", [])],
            )
            for st in d.get("steps", [])
        ]
        findings = [Finding.from_dict(f) for f in d.get("findings", [])]
        summary = d.get("summary", {})
        return cls(
            tool=d["tool"],
            environment=d["environment"],
            script=script,
            config=d.get("config", {}),
            steps=steps,
            findings=findings,
            notes=list(d.get("notes", [])),
            internal_errors=list(d.get("internal_errors", [])),
            steps_seen=summary.get("backward_calls", 0),
            steps_checked=summary.get("steps_checked", 0),
            outcome=summary.get("outcome"),
            format_minor=int(d.get("format_minor", 0)),
        )
