"""The report model: plain dataclasses that round-trip through JSON (no torch here).

A saved report can be re-rendered and tested without torch. ``FORMAT`` is the JSON contract's
version; bump it on any incompatible change and say what changed below.

Format history:
  1 — first format: script, config, steps, findings (grouped by kind and site), summary.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = 1


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

    @property
    def key(self) -> tuple[str, str | None, int | None]:
        return (
            self.kind,
            self.site.file if self.site else None,
            self.site.line if self.site else None,
        )


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
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        order = [
            "format",
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
        findings = [
            Finding(
                id=f["id"],
                kind=f["kind"],
                severity=f["severity"],
                grad_state=f["grad_state"],
                parameters=list(f["parameters"]),
                site=Site.from_dict(f.get("site")),
                stack=[
                    s2 for s2 in (Site.from_dict(x) for x in f.get("stack", [])) if s2 is not None
                ],
                steps=list(f.get("steps", [])),
                message=f["message"],
                hint=f["hint"],
                related=[
                    s2 for s2 in (Site.from_dict(x) for x in f.get("related", [])) if s2 is not None
                ],
            )
            for f in d.get("findings", [])
        ]
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
        )
