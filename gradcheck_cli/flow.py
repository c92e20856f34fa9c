"""The gradient-flow view of a report: bars per expected parameter, grouped by module (no torch).

Shared by the HTML report and the terminal's ``-v`` table, so both show the same shape: one bar per
expected tensor of a checked backward, in model order, grouped by the module that owns it, its
gradient norm on a log scale common to all the steps, and the finding that explains a missing one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape

from gradcheck_cli.model import Report, Step

_BLOCKS = " ▏▎▍▌▋▊▉█"


@dataclass
class Bar:
    name: str  # the full qualified name (model.encoder.0.weight)
    short: str  # the name inside its module (0.weight relative to model.encoder)
    state: str  # ok | none | zero | frozen
    norm: float | None
    fraction: float  # bar length in [0, 1] on the report's log scale (0 for none/zero/frozen)
    finding: int | None  # index into report.findings of the finding that explains it
    kind: str | None  # that finding's kind


@dataclass
class Group:
    module: str
    bars: list[Bar] = field(default_factory=list)


@dataclass
class Scale:
    """log10 range of the non-zero norms of all recorded steps."""

    lo: float
    hi: float

    def fraction(self, norm: float | None) -> float:
        if norm is None or norm <= 0 or not math.isfinite(norm):
            return 0.0
        if self.hi <= self.lo:
            return 1.0
        # A floor of 4% keeps the smallest non-zero norm visible next to a zero.
        return 0.04 + 0.96 * (math.log10(norm) - self.lo) / (self.hi - self.lo)


def scale_of(report: Report) -> Scale:
    logs = [
        math.log10(c.norm)
        for s in report.steps
        for c in s.checked
        if c.norm is not None and c.norm > 0 and math.isfinite(c.norm)
    ]
    if not logs:
        return Scale(0.0, 0.0)
    return Scale(math.floor(min(logs)), math.ceil(max(logs)))


def split_name(name: str) -> tuple[str, str]:
    """``model.encoder.0.weight`` -> (``model.encoder.0``, ``weight``); a plain leaf is its own."""
    head, dot, tail = name.rpartition(".")
    return (head, tail) if dot and "[" not in tail else (name, name)


def _explaining(report: Report, name: str, step: int, state: str) -> int | None:
    """The finding that explains ``name``'s state at ``step`` (a problem before information)."""
    best: int | None = None
    for i, f in enumerate(report.findings):
        if name not in f.parameters or (f.steps and step not in f.steps):
            continue
        if state in ("none", "zero") and f.grad_state not in (state, "raised"):
            continue
        if best is None or (f.severity != "info" and report.findings[best].severity == "info"):
            best = i
    return best


def groups_of(report: Report, step: Step, scale: Scale) -> list[Group]:
    groups: list[Group] = []
    index: dict[str, Group] = {}
    for c in step.checked:
        module, short = split_name(c.name)
        group = index.get(module)
        if group is None:
            group = index[module] = Group(module)
            groups.append(group)
        found = _explaining(report, c.name, step.index, c.state)
        kind = report.findings[found].kind if found is not None else None
        fraction = scale.fraction(c.norm) if c.state == "ok" else 0.0
        group.bars.append(Bar(c.name, short, c.state, c.norm, fraction, found, kind))
    return groups


def format_norm(norm: float | None) -> str:
    return "—" if norm is None else f"{norm:.3g}"


def _block_bar(fraction: float, width: int) -> str:
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (_BLOCKS[part] if part else "")).ljust(width)


_MARKS = {"none": "[bold red]✗ none[/]", "zero": "[yellow]0 zero[/]", "frozen": "[dim]frozen[/]"}


def render_flow_table(report: Report, console: Console, width: int = 24) -> None:
    """``-v``: the first checked backward's gradient flow, one line per tensor, per module."""
    step = next((s for s in report.steps if s.checked), None)
    if step is None:
        return
    scale = scale_of(report)
    console.print()
    console.print(
        f"[bold]gradient flow[/] [dim]backward call {step.index}, |grad| on a log scale "
        f"1e{scale.lo:+.0f} … 1e{scale.hi:+.0f}[/]"
    )
    groups = groups_of(report, step, scale)
    pad = max(len(b.short) for g in groups for b in g.bars)
    for g in groups:
        console.print(f"  [bold]{escape(g.module)}[/]")
        for b in g.bars:
            mark = _MARKS.get(b.state, "")
            if b.kind and b.state in ("none", "zero"):
                mark += f" [dim]({escape(b.kind)})[/]"
            norm = format_norm(b.norm) if b.state == "ok" else ""
            console.print(
                f"    {escape(b.short.ljust(pad))} [green]{_block_bar(b.fraction, width)}[/] "
                f"{norm:>9} {mark}".rstrip()
            )
