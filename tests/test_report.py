"""The report model and the console renderer, without torch: a saved report re-renders the same."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

from gradcheck_cli.model import (
    Checked,
    Finding,
    LossInfo,
    PathNode,
    Report,
    ScriptError,
    ScriptInfo,
    Site,
    Step,
)
from gradcheck_cli.report import load_json, make_console, render_console, to_json, write_atomic


def _report() -> Report:
    site = Site("train.py", 23, "forward", "h = self.encoder(x).detach()")
    finding = Finding(
        id="GC101",
        kind="detach",
        severity="error",
        grad_state="none",
        parameters=["model.layers[0].weight", "model.layers[0].bias"],
        site=site,
        stack=[site, Site("train.py", 40, "main", "loss = model(x).sum()")],
        steps=[0, 1],
        message="`.detach()` cut the graph",
        hint="Remove the .detach().",
    )
    return Report(
        tool={"name": "gradcheck", "version": "0.1.0"},
        environment={"python": "3.11", "torch": "2.13.0", "platform": "linux"},
        script=ScriptInfo(path="train.py", argv=["train.py"], exit_code=0),
        config={"steps": 10},
        findings=[finding],
        steps_seen=2,
        steps_checked=2,
    )


def _render(report: Report) -> list[str]:
    out = io.StringIO()
    render_console(report, make_console(file=out, no_color=True, width=100))
    return [line.rstrip() for line in out.getvalue().splitlines()]


def test_console_report_lines() -> None:
    lines = _render(_report())
    assert "gradcheck: 1 finding in train.py (2 of 2 backward calls checked)" in lines
    # `[0]` is user text: it must survive rich markup.
    assert "✗ detach GC101  model.layers[0].* (2 tensors) got no gradient" in lines
    assert "    train.py:23 in forward" in lines
    assert "      h = self.encoder(x).detach()" in lines
    assert "    called from train.py:40 main" in lines
    assert "    backward calls: 0, 1" in lines


def test_saved_report_round_trips_and_renders_the_same(tmp_path: Path) -> None:
    report = _report()
    path = tmp_path / "report.json"
    write_atomic(str(path), to_json(report))
    loaded = load_json(str(path))
    assert loaded.to_dict() == report.to_dict()
    assert _render(loaded) == _render(report)


def _full_report() -> Report:
    """A report with every field of every model type set to something that is not its default."""
    base = _report()
    site = base.findings[0].site
    other = Site("lib.py", 7, "helper", "return x.detach()")
    finding = dataclasses.replace(
        base.findings[0],
        severity="warning",
        related=[other],
        ranks=[0, 2],
        path=[PathNode("cut", ".detach()", other), PathNode("collapsed", "3 nodes", site)],
    )
    step = Step(
        index=1,
        api="torch.autograd.grad",
        site=site,
        loss=LossInfo(shape=[2], dtype="float32", requires_grad=True, grad_fn="SumBackward0"),
        checked=[Checked(name="model.w", state="zero", norm=0.5, dead_fraction=0.25)],
    )
    script = ScriptInfo(
        path="train.py",
        argv=["train.py", "--lr", "1"],
        exit_code=1,
        error=ScriptError(type="ValueError", message="boom", site=other),
        interrupted=True,
        stopped_early=True,
    )
    return Report(
        tool={"name": "gradcheck", "version": "0.1.0"},
        environment={"python": "3.11"},
        script=script,
        config={"steps": 10},
        steps=[step],
        findings=[finding],
        notes=["a note"],
        internal_errors=["while checking: boom"],
        steps_seen=5,
        steps_checked=4,
        outcome="findings",
    )


def _defaults_left(obj: object, path: str = "report") -> list[str]:
    """Fields of ``obj`` (recursively) still at their default, empty or None."""
    left: list[str] = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        if f.name in (
            "format",
            "format_minor",
        ):  # the format version: its default is the only value
            continue
        value = getattr(obj, f.name)
        where = f"{path}.{f.name}"
        if value in (None, [], {}, False) or (
            f.default is not dataclasses.MISSING and value == f.default
        ):
            left.append(where)
        for item in value if isinstance(value, list) else [value]:
            if dataclasses.is_dataclass(item):
                left += _defaults_left(item, where)
    return left


def test_every_field_round_trips_through_json() -> None:
    report = _full_report()
    # A field added to the model without being set here fails this line, not silently passes.
    assert _defaults_left(report) == []
    loaded = Report.from_dict(json.loads(to_json(report)))
    assert loaded == report
    assert loaded.to_dict() == report.to_dict()
    assert loaded.findings[0].ranks == [0, 2]
